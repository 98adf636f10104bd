print("ddsnap")
