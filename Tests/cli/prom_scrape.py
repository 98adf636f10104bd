#!/usr/bin/env python3
# Scrapes a Prometheus endpoint and parses it with Prometheus' own client library (a parse
# error fails): prints each sample as `name{k=v,...} value`, labels sorted, or with
# --families each family as `name type help`.
# Usage: prom_scrape.py URL [--families]
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=20) as r:
    if r.status != 200 or not r.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"):
        sys.exit(f"unexpected answer: {r.status} {r.headers.get('Content-Type')}")
    text = r.read().decode()
for family in text_string_to_metric_families(text):
    if "--families" in sys.argv[2:]:
        print(family.name, family.type, family.documentation)
        continue
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value:.17g}")
