"""The competence tree: main groups, groups and the competences that can be granted."""
from __future__ import annotations

import psycopg

from service.events import outbox
from service.ops.audit import audit
from service.platform import db
from service.platform.errors import Conflict, Invalid, NotFound
from service.platform.paging import Page, page_of


MAIN_GROUP, GROUP, COMPETENCE = "main_group", "group", "competence"


KINDS = (MAIN_GROUP, GROUP, COMPETENCE)


# The kind a node's parent must have; a main group has no parent.
PARENT_KIND = {MAIN_GROUP: None, GROUP: MAIN_GROUP, COMPETENCE: GROUP}


# A node with children is refused deletion; this many of them are named in the answer.
CHILDREN_NAMED = 20


def list_competences(conn: psycopg.Connection, *, parent_id: int | None, kind: str | None,
                     limit: int, offset: int) -> Page:
    """The tree, depth first, optionally the children of one node or the nodes of one kind."""
    return page_of(conn, "admin_competences", {"parent_id": parent_id, "kind": kind}, limit, offset)


def get_competence(conn: psycopg.Connection, competence_id: int) -> dict:
    row = conn.execute(db.q("admin_competence_get"), {"id": competence_id}).fetchone()
    if row is None:
        raise NotFound(f"competence {competence_id} does not exist")
    return row


def _check_parent(conn: psycopg.Connection, kind: str, parent_id: int | None) -> None:
    """Enforce main group -> group -> competence; lock the parent so it stays as checked."""
    wanted = PARENT_KIND[kind]
    if wanted is None:
        if parent_id is not None:
            raise Invalid("a main group has no parent", {"parent_id": ["must be null for a main group"]})
        return
    if parent_id is None:
        raise Invalid(f"a {kind} needs a parent ({wanted})", {"parent_id": [f"required: a {wanted}"]})
    parent = conn.execute(db.q("admin_competence_share"), {"id": parent_id}).fetchone()
    if parent is None:
        raise Invalid(f"parent {parent_id} does not exist", {"parent_id": ["does not exist"]})
    if parent["kind"] != wanted:
        raise Invalid(f"the parent of a {kind} must be a {wanted}, not a {parent['kind']}",
                      {"parent_id": [f"a {parent['kind']}, must be a {wanted}"]})


def _check_settings(kind: str, values: dict) -> None:
    """Validity and renewal belong to competences (leaves) only."""
    if kind == COMPETENCE:
        return
    errors = {}
    if values.get("default_valid_days") is not None:
        errors["default_valid_days"] = ["only a competence (leaf) has a validity"]
    if values.get("renewal_window_days") is not None:
        errors["renewal_window_days"] = ["only a competence (leaf) has a renewal window"]
    if errors:
        raise Invalid(f"a {kind} has no validity or renewal", errors)


def create_competence(conn: psycopg.Connection, data: dict, *, actor: str) -> dict:
    """Add a node to the tree."""
    values = {
        "parent_id": data.get("parent_id"), "name": data["name"], "kind": data["kind"],
        "default_valid_days": data.get("default_valid_days"),
        "renewal_window_days": data.get("renewal_window_days"),
    }
    _check_parent(conn, values["kind"], values["parent_id"])
    _check_settings(values["kind"], values)
    row = conn.execute(db.q("admin_competence_insert"), values).fetchone()
    audit(conn, actor, "competence.create", f"competence:{row['id']}", None, row)
    return row


def update_competence(conn: psycopg.Connection, competence_id: int, changes: dict, *, actor: str) -> dict:
    """Rename, move (a new parent of the right kind) or reconfigure a node."""
    before = conn.execute(db.q("admin_competence_lock"), {"id": competence_id}).fetchone()
    if before is None:
        raise NotFound(f"competence {competence_id} does not exist")
    values = {k: before[k] for k in ("parent_id", "name", "default_valid_days", "renewal_window_days")}
    values.update(changes)
    if values["parent_id"] == competence_id:
        raise Invalid("a node cannot be its own parent", {"parent_id": ["is the node itself"]})
    if "parent_id" in changes:
        _check_parent(conn, before["kind"], values["parent_id"])
    _check_settings(before["kind"], values)
    if all(values[k] == before[k] for k in values):
        return before
    row = conn.execute(db.q("admin_competence_update"), {**values, "id": competence_id}).fetchone()
    audit(conn, actor, "competence.update", f"competence:{competence_id}",
          {k: before[k] for k in changes}, {k: row[k] for k in changes})
    return row


def competence_usage(conn: psycopg.Connection, competence_id: int) -> dict:
    """What deleting a node would take with it: `grants` and `links` (the confirmation says so)."""
    get_competence(conn, competence_id)
    return conn.execute(db.q("admin_competence_usage"), {"id": competence_id}).fetchone()


def delete_competence(conn: psycopg.Connection, competence_id: int, *, actor: str) -> dict:
    """Delete a node without children, with every grant and link of it (rule 5).

    A main group or group that still has children is refused (409): deleting it would
    silently delete a subtree and every grant in it.
    """
    node = conn.execute(db.q("admin_competence_lock"), {"id": competence_id}).fetchone()
    if node is None:
        raise NotFound(f"competence {competence_id} does not exist")
    children = [r["id"] for r in conn.execute(
        db.q("admin_competence_children"), {"id": competence_id, "limit": CHILDREN_NAMED}).fetchall()]
    if children:
        raise Conflict(f"{node['kind']} {competence_id} still has children; delete or move them first",
                       {"children": children})
    outbox.competence_deleted(conn, competence_id)  # grant.deleted, before the grants go
    grants = conn.execute(db.q("admin_competence_delete_grants"), {"id": competence_id}).fetchone()["n"]
    links = conn.execute(db.q("admin_competence_delete_links"), {"id": competence_id}).fetchone()["n"]
    conn.execute(db.q("admin_competence_delete"), {"id": competence_id})
    outcome = {"deleted_grants": grants, "deleted_links": links}
    audit(conn, actor, "competence.delete", f"competence:{competence_id}", node, outcome)
    return outcome
