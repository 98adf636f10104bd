#!/usr/bin/env python3
# Parses a scrape (curl's output, on standard input) with Prometheus' own client library (a
# parse error fails): prints each sample as `name{k=v,...} value`, labels sorted, or with
# --families each family as `name type help`.
# Usage: curl -sf URL | prom_scrape.py [--families]
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
if not text:
    sys.exit("nothing to parse: the scrape failed")
for family in text_string_to_metric_families(text):
    if "--families" in sys.argv[1:]:
        print(family.name, family.type, family.documentation)
        continue
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value:.17g}")
