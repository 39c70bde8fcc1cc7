"""The `context` block of a recall (as Aionis builds it): cited, typed snippets plus markdown text.

Top 4 topics/concepts, 6 entities, 10 events/evidence and 6 rules by ranked order, each section under a `# ` header.
"""

from __future__ import annotations

from typing import Any

import orjson

Node = dict[str, Any]


def _pick(ranked: list[dict[str, Any]], nodes: dict[str, Node], types: set[str], limit: int) -> list[Node]:
    out: list[Node] = []
    for r in ranked:
        n = nodes.get(r["id"])
        if n is None or n["type"] not in types:
            continue
        if n["type"] == "topic" and n.get("topic_state") == "draft":
            continue
        out.append(n)
        if len(out) >= limit:
            break
    return out


def _compression(n: Node) -> bool:
    slots = n.get("concept_slots")
    return n["type"] == "concept" and isinstance(slots, dict) and slots.get("summary_kind") == "compression_rollup"


def _citation_refs(n: Node) -> list[Any]:
    slots = n.get("concept_slots") or {}
    refs = slots.get("citations") if isinstance(slots, dict) else None
    return refs if isinstance(refs, list) else []


def _json(v: Any) -> str:
    try:
        return orjson.dumps(v).decode()
    except TypeError:
        return str(v)


def build_context(
    ranked: list[dict[str, Any]], nodes: dict[str, Node], rule_defs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    citations: list[dict[str, Any]] = []
    seen: set[str] = set()

    def cite(n: Node) -> None:
        if n["id"] in seen:
            return
        seen.add(n["id"])
        citations.append({"node_id": n["id"], "commit_id": n.get("commit_id"), "raw_ref": n.get("raw_ref"),
                          "evidence_ref": n.get("evidence_ref")})

    def opt(d: dict[str, Any], **kw: Any) -> dict[str, Any]:
        d.update({k: v for k, v in kw.items() if v is not None})  # JS undefined is dropped by JSON.stringify
        return d

    topics = _pick(ranked, nodes, {"topic", "concept"}, 4)
    has_compression = any(_compression(n) for n in topics)
    for n in topics:
        items.append(opt({"kind": n["type"], "node_id": n["id"]}, title=n.get("title"), summary=n.get("text_summary"))
                     | {"commit_id": n.get("commit_id")})
        cite(n)

    entities = _pick(ranked, nodes, {"entity"}, 6)
    for n in entities:
        items.append(opt({"kind": "entity", "node_id": n["id"]}, title=n.get("title"), summary=n.get("text_summary"))
                     | {"commit_id": n.get("commit_id")})
        cite(n)

    raw_events = _pick(ranked, nodes, {"event", "evidence"}, 24 if has_compression else 10)
    if has_compression:
        cited = {c["node_id"] for t in topics if _compression(t) for c in _citation_refs(t)
                 if isinstance(c, dict) and isinstance(c.get("node_id"), str)}
        events = [n for n in raw_events if n["id"] not in cited][:5]
    else:
        events = raw_events[:10]
    for n in events:
        items.append(opt({"kind": n["type"], "node_id": n["id"]}, summary=n.get("text_summary"))
                     | {"raw_ref": n.get("raw_ref"), "evidence_ref": n.get("evidence_ref"),
                        "commit_id": n.get("commit_id")})
        cite(n)

    rules = _pick(ranked, nodes, {"rule"}, 6)
    for n in rules:
        d = rule_defs.get(n["id"])
        slots = n.get("rule_slots") if isinstance(n.get("rule_slots"), dict) else {}
        item: dict[str, Any] = {"kind": "rule", "node_id": n["id"]}
        opt(item, state=d and d["state"], rule_scope=d and d["rule_scope"])
        if d is not None:
            item["target_agent_id"] = d["target_agent_id"]
            item["target_team_id"] = d["target_team_id"]
        opt(item, summary=n.get("text_summary"),
            if_json=d["if_json"] if d and d["if_json"] is not None else slots.get("if"),
            then_json=d["then_json"] if d and d["then_json"] is not None else slots.get("then"),
            exceptions_json=d["exceptions_json"] if d and d["exceptions_json"] is not None else slots.get("exceptions"),
            stats={"positive": d["positive_count"], "negative": d["negative_count"]} if d else None)
        item["commit_id"] = n.get("commit_id")
        items.append(item)
        cite(n)

    lines: list[str] = []

    def section(title: str) -> None:
        if lines:
            lines.append("")
        lines.append(f"# {title}")

    if topics:
        section("Topics / Concepts")
        for n in topics:
            label = n["id"] if n.get("title") is None else n["title"]
            summary = f": {n['text_summary']}" if n.get("text_summary") else ""
            if _compression(n):
                covered = (n.get("concept_slots") or {}).get("source_event_count") or 0
                lines.append(f"- {label}{summary} (node:{n['id']}, compression, covers={covered})")
                for c in _citation_refs(n)[:3]:
                    if isinstance(c, dict) and isinstance(c.get("node_id"), str):
                        lines.append(f"  evidence_node={c['node_id']}")
            else:
                lines.append(f"- {label}{summary} (node:{n['id']})")
    if entities:
        section("Entities")
        for n in entities:
            label = n["id"] if n.get("title") is None else n["title"]
            summary = f": {n['text_summary']}" if n.get("text_summary") else ""
            lines.append(f"- {label}{summary} (node:{n['id']})")
    if events:
        section("Supporting Events / Evidence")
        for n in events:
            summary = n["text_summary"] if n.get("text_summary") is not None else "(no summary)"
            refs = []
            if n.get("raw_ref"):
                refs.append(f"raw_ref={n['raw_ref']}")
            if n.get("evidence_ref"):
                refs.append(f"evidence_ref={n['evidence_ref']}")
            lines.append(f"- {summary} (node:{n['id']}{', ' + ', '.join(refs) if refs else ''})")
    if rules:
        section("Applicable Rules (Shadow/Active)")
        for n in rules:
            d = rule_defs.get(n["id"])
            slots = n.get("rule_slots") if isinstance(n.get("rule_slots"), dict) else {}
            state = d["state"] if d else "unknown"
            ifj = d["if_json"] if d and d["if_json"] is not None else slots.get("if")
            thenj = d["then_json"] if d and d["then_json"] is not None else slots.get("then")
            stats = f" pos={d['positive_count']} neg={d['negative_count']}" if d else ""
            scope_info = f" scope={d['rule_scope']}" if d and d["rule_scope"] else ""
            target = ""
            if d and d["rule_scope"] == "agent" and d["target_agent_id"]:
                target = f" target_agent={d['target_agent_id']}"
            elif d and d["rule_scope"] == "team" and d["target_team_id"]:
                target = f" target_team={d['target_team_id']}"
            summary = n["text_summary"] if n.get("text_summary") is not None else "(none)"
            lines.append(f"- state={state}{scope_info}{target}{stats} summary={summary} (node:{n['id']})")
            if ifj:
                lines.append(f"  if={_json(ifj)}")
            if thenj:
                lines.append(f"  then={_json(thenj)}")
    return {"text": "\n".join(lines), "items": items, "citations": citations}
