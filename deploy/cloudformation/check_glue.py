#!/usr/bin/env python3
# Checks that the Glue tables of chimewatch.yaml match deploy/athena/*.sql, the one source of truth of the Athena tables.
"""Compare the template's Glue tables with the Athena DDL in deploy/athena/.

The tables are generated into chimewatch.yaml by render.py; this reads the template as CloudFormation would (with
cfn-lint's decoder, so run it with the Python that has cfn-lint) and the SQL with a parser of its own, and fails on
any difference: a table missing on either side, a column's name, type or place, the partition keys, the storage
format, the location, or a TBLPROPERTIES entry (partition projection).

    .venv/bin/python deploy/cloudformation/check_glue.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cfnlint.decode import decode

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "chimewatch.yaml"
ATHENA = HERE.parent / "athena"

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def sql_table(path: Path) -> dict:
    """The table a CREATE EXTERNAL TABLE statement declares, with `--` comments removed."""
    text = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
    head = re.search(r"CREATE\s+EXTERNAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\((.*?)\)\s*PARTITIONED\s+BY\s*"
                     r"\((.*?)\)", text, re.I | re.S)
    if not head:
        raise SystemExit(f"check_glue: {path}: expected CREATE EXTERNAL TABLE name (...) PARTITIONED BY (...)")
    pairs = lambda block: [tuple(part.split()) for part in block.split(",") if part.strip()]
    columns = [(name, kind.lower()) for name, kind in pairs(head[2])]
    partitions = [(name, kind.lower()) for name, kind in pairs(head[3])]
    stored = re.search(r"STORED\s+AS\s+(\w+)", text, re.I)[1].upper()
    location = re.search(r"LOCATION\s+'([^']*)'", text, re.I)[1]
    props = dict(re.findall(r"'([^']*)'\s*=\s*'([^']*)'", re.search(r"TBLPROPERTIES\s*\((.*)\)", text, re.S | re.I)[1]))
    return {"name": head[1], "columns": columns, "partitions": partitions, "stored": stored, "location": location,
            "props": props}


def as_sql_location(value) -> str:
    """A template location (Fn::Sub over the stack's bucket and prefix) written back as the SQL files write it."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        return (text.replace("${ArchiveBucket}", "YOUR-BUCKET").replace("${ArchivePrefix}", "YOUR-PREFIX")
                .replace("${!", "${"))
    return str(value)


def template_tables() -> dict:
    template, errors = decode(str(TEMPLATE))
    if errors or template is None:
        raise SystemExit(f"check_glue: cannot read {TEMPLATE}: {errors}")
    tables = {}
    for logical, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Glue::Table":
            continue
        table = resource["Properties"]["TableInput"]
        storage = table["StorageDescriptor"]
        tables[table["Name"]] = {
            "logical": logical,
            "columns": [(c["Name"], c["Type"].lower()) for c in storage["Columns"]],
            "partitions": [(p["Name"], p["Type"].lower()) for p in table.get("PartitionKeys", [])],
            "serde": storage.get("SerdeInfo", {}).get("SerializationLibrary"),
            "location": as_sql_location(storage["Location"]),
            "props": {k: as_sql_location(v) for k, v in table.get("Parameters", {}).items()},
        }
    return tables


def main() -> int:
    problems = []
    in_template = template_tables()
    in_sql = {}
    for path in sorted(ATHENA.glob("*.sql")):
        table = sql_table(path)
        in_sql[table["name"]] = table
        got = in_template.get(table["name"])
        where = f"{table['name']} ({path.name} vs {TEMPLATE.name})"
        if got is None:
            problems.append(f"{where}: no AWS::Glue::Table of that name in the template")
            continue
        if got["columns"] != table["columns"]:
            want, have = table["columns"], got["columns"]
            for i in range(max(len(want), len(have))):
                w = want[i] if i < len(want) else None
                h = have[i] if i < len(have) else None
                if w != h:
                    problems.append(f"{where}: column {i + 1}: SQL has {w}, template has {h}")
        if got["partitions"] != table["partitions"]:
            problems.append(f"{where}: partitions: SQL {table['partitions']}, template {got['partitions']}")
        if table["stored"] != "PARQUET" or got["serde"] != PARQUET_SERDE:
            problems.append(f"{where}: storage: SQL STORED AS {table['stored']}, template SerDe {got['serde']}")
        if got["location"] != table["location"]:
            problems.append(f"{where}: location: SQL {table['location']}, template {got['location']}")
        for key, value in table["props"].items():
            if got["props"].get(key) != value:
                problems.append(f"{where}: TBLPROPERTIES {key!r}: SQL {value!r}, template {got['props'].get(key)!r}")
    for name in sorted(set(in_template) - set(in_sql)):
        problems.append(f"{name}: a Glue table in the template ({in_template[name]['logical']}) has no deploy/athena/ file")
    for problem in problems:
        print(f"check_glue: {problem}", file=sys.stderr)
    if problems:
        print("check_glue: the template's Glue tables differ from deploy/athena/*.sql; run "
              "python3 deploy/cloudformation/render.py", file=sys.stderr)
        return 1
    counts = ", ".join(f"{name}: {len(table['columns'])} columns" for name, table in sorted(in_sql.items()))
    print(f"check_glue: {len(in_sql)} tables match deploy/athena/*.sql ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
