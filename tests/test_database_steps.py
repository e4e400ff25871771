"""The pure parts of workbook.steps.database: how plans, indexes and schemas are read as data,
and the backend's revision chain. (The notebook holds the platform to them; these hold the
readers themselves, so a wrong reader cannot make a broken platform look fine.)"""

from __future__ import annotations

from typing import Any

from workbook.steps import database as dbs


def _index(tbl: str, name: str, keys: list[int], unique: bool = False, pred: str | None = None) -> dict[str, Any]:
    return {"tbl": tbl, "name": name, "keys": keys, "is_unique": unique, "pred": pred, "exprs": None}


def test_prefix_and_duplicate_indexes_are_redundant() -> None:
    found = [_index("t", "t_pkey", [1], unique=True), _index("t", "t_a", [2]), _index("t", "t_a_b", [2, 3]),
             _index("t", "t_c1", [4]), _index("t", "t_c2", [4]), _index("u", "u_a", [2])]
    assert dbs.redundant_indexes(found) == ["t.t_a (covered by t_a_b)", "t.t_c2 (covered by t_c1)"]


def test_unique_and_partial_indexes_are_not_redundant() -> None:
    found = [_index("t", "t_a_key", [2], unique=True), _index("t", "t_a_b", [2, 3]),
             _index("t", "t_live", [4], pred="(deleted_at IS NULL)"), _index("t", "t_all", [4, 5])]
    assert dbs.redundant_indexes(found) == []


def test_scans_name_the_index_a_bitmap_heap_scan_reads_through() -> None:
    plan = {"Plan": {"Node Type": "Limit", "Plans": [
        {"Node Type": "Sort", "Plans": [{"Node Type": "Bitmap Heap Scan", "Relation Name": "messages", "Plans": [
            {"Node Type": "Bitmap Index Scan", "Index Name": "messages_thread_created"}]}]},
        {"Node Type": "Seq Scan", "Relation Name": "threads"},
        {"Node Type": "Index Only Scan", "Relation Name": "runs", "Index Name": "runs_owner"}]}}
    assert dbs.scans_of(plan, "messages") == ["Bitmap Heap Scan using messages_thread_created"]
    assert dbs.scans_of(plan, "threads") == ["Seq Scan"]
    assert dbs.scans_of(plan, "runs") == ["Index Only Scan using runs_owner"]


def test_constraint_definitions_compare_without_casts() -> None:
    from_ddl = "CHECK (((role)::text = ANY ((ARRAY['user'::character varying, 'assistant'::character varying])::text[])))"
    from_dump = "CHECK (((role)::text = ANY (ARRAY[('user'::character varying)::text, ('assistant'::character varying)::text])))"
    assert dbs._unparsed(from_ddl) == dbs._unparsed(from_dump)
    assert dbs._unparsed(from_ddl) != dbs._unparsed(from_ddl.replace("assistant", "system"))


def test_revisions_form_one_chain_from_the_first() -> None:
    chain = dbs.revisions()
    assert chain[0] == "0001" and len(chain) == len(set(chain)) >= 6
    assert chain == sorted(chain)


def test_identifiers_are_short_stable_and_distinct() -> None:
    long_ns = "wb_20261204t000000_local_04_database_" + "x" * 200
    assert dbs.ident(long_ns) == dbs.ident(long_ns) and len(dbs.ident(long_ns, "wbscratch")) <= 63
    assert dbs.ident(long_ns + "a") != dbs.ident(long_ns + "b")
