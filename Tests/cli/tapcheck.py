"""The "ok - ..." / "not ok - ..." lines the shell tests count, for the Python checkers."""

failures = 0


def check(prefix, name, cond, detail=""):
    global failures
    if cond:
        print(f"ok - {prefix}: {name}")
    else:
        failures += 1
        print(f"not ok - {prefix}: {name}" + (f"\n#   {detail}" if detail else ""))
