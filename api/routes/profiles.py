"""Harness-profile routes: list, read (optionally resolved), create, replace, delete, validate.

Bodies are the profile document as JSON — the same keys as a YAML profile file, plus `name`
on create. Every problem is a 422 naming `body.<key>`; a built-in or a taken name is a 409.
`resolve_submission` is the step the work-order route runs before building a work order.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from agentgate.config import Settings
from agentgate.models import PROFILE_NAME_PATTERN, WorkOrderRequest
from agentgate.profiles import (
    ProfileApplyError,
    ProfileConflict,
    ProfileDocument,
    ProfileError,
    ProfileNotFound,
    ProfileStore,
    apply_profile,
    check_name,
    profile_from_mapping,
)
from api.deps import SettingsDep
from api.errors import ApiError

router = APIRouter(prefix="/api/v1/profiles", tags=["profiles"])

ProfileName = Annotated[str, Path(pattern=PROFILE_NAME_PATTERN, description="1-63 of a-z, 0-9, '-', '_'.")]
_BODY_DOC = (
    "A profile document: any of `description`, `extends` and the harness fields of a work order "
    "(`max_iterations`, `gates`, `convergence`, `delivery`, ... — see docs/profiles.md)."
)
_PUT_EXAMPLE = {"extends": "default", "max_iterations": 5}
_EXAMPLE = {"name": "my-team", "extends": "ci-focused", "max_iterations": 4, "gates": ["pytest -q"]}


def get_store(settings: SettingsDep) -> ProfileStore:
    return ProfileStore(settings.profiles_dir)


StoreDep = Annotated[ProfileStore, Depends(get_store)]


def _invalid(exc: ProfileError, prefix: str = "body") -> ApiError:
    """A profile problem as the 422 envelope: each detail names `body.<key>` (and the line, for files)."""
    details = []
    for problem in exc.problems:
        field = f"{prefix}.{problem.key}" if problem.key else prefix
        details.append({"field": field, "message": problem.message, "line": problem.line, "source": exc.source})
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or str(exc)
    return ApiError(422, "validation_error", message, details)


def _not_found(exc: ProfileNotFound) -> ApiError:
    return ApiError(404, "not_found", str(exc), {"available": exc.available})


def _conflict(exc: ProfileConflict) -> ApiError:
    return ApiError(409, "conflict", str(exc))


def _document(store: ProfileStore, name: str) -> ProfileDocument:
    try:
        return store.load(name)
    except ProfileNotFound as exc:
        raise _not_found(exc) from None
    except ProfileError as exc:
        raise ApiError(422, "invalid_profile", str(exc), exc.details()) from None


def _from_body(body: Any, name: str) -> ProfileDocument:
    try:
        doc = profile_from_mapping(body, name, "request body")
    except ProfileError as exc:
        raise _invalid(exc) from None
    doc.data.pop("name", None)  # checked to match; the file's name is the profile's name
    return doc


def _view(store: ProfileStore, doc: ProfileDocument, resolve: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": doc.name,
        "builtin": doc.builtin,
        "source": doc.source,
        "description": doc.description,
        "extends": doc.extends,
        "document": doc.data,
    }
    if resolve:
        try:
            resolved = store.resolve(doc.name)
        except ProfileError as exc:
            raise ApiError(422, "invalid_profile", str(exc), exc.details()) from None
        data.update(chain=resolved.chain, hash=resolved.hash, resolved=resolved.settings)
    return data


@router.get("")
def list_profiles(store: StoreDep) -> dict:
    """Built-ins first, then user profiles; a user file that does not parse is listed with its `error`."""
    return {"items": store.list()}


@router.post("", status_code=201)
def create_profile(
    store: StoreDep,
    response: Response,
    body: Annotated[dict[str, Any], Body(description=_BODY_DOC + " `name` is required.", examples=[_EXAMPLE])],
) -> dict:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(422, "validation_error", "body.name: required: the new profile's name",
                       [{"field": "body.name", "message": "required: the new profile's name"}])  # fmt: skip
    try:
        check_name(name)
    except ProfileError as exc:
        raise _invalid(exc) from None
    doc = _from_body(body, name)
    try:
        resolved = store.create(doc)
    except ProfileConflict as exc:
        raise _conflict(exc) from None
    except ProfileError as exc:
        raise _invalid(exc) from None
    response.headers["Location"] = f"/api/v1/profiles/{name}"
    return {**_view(store, store.load(name), resolve=False), "chain": resolved.chain, "hash": resolved.hash}


@router.get("/{name}")
def get_profile(
    name: ProfileName,
    store: StoreDep,
    resolve: Annotated[bool, Query(description="Include the merged settings, the extends chain and the hash.")] = False,
) -> dict:
    return _view(store, _document(store, name), resolve)


@router.put("/{name}", responses={201: {"description": "Created (200 when an existing profile was replaced)"}})
def replace_profile(
    name: ProfileName,
    store: StoreDep,
    response: Response,
    body: Annotated[dict[str, Any], Body(description=_BODY_DOC, examples=[_PUT_EXAMPLE])],
) -> dict:
    """Create or replace a user profile (201 when created); built-ins are read-only (409)."""
    doc = _from_body(body, name)
    try:
        resolved, created = store.replace(doc)
    except ProfileConflict as exc:
        raise _conflict(exc) from None
    except ProfileError as exc:
        raise _invalid(exc) from None
    if created:
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/profiles/{name}"
    return {**_view(store, store.load(name), resolve=False), "chain": resolved.chain, "hash": resolved.hash}


@router.delete("/{name}")
def delete_profile(name: ProfileName, store: StoreDep) -> dict:
    """Delete a user profile; 409 for a built-in or a profile other profiles extend."""
    try:
        store.delete(name)
    except ProfileNotFound as exc:
        raise _not_found(exc) from None
    except ProfileConflict as exc:
        raise _conflict(exc) from None
    return {"name": name, "deleted": True}


@router.post("/{name}/validate")
def validate_profile(
    name: ProfileName,
    store: StoreDep,
    body: Annotated[
        dict[str, Any] | None,
        Body(description="Optional: a candidate document to check as `name` without storing it. " + _BODY_DOC),
    ] = None,
) -> dict:
    """Resolve the stored profile (or the candidate in the body): `valid` with chain and hash, or the errors."""
    try:
        if body is None:
            if not store.exists(name):
                raise _not_found(ProfileNotFound(name, store.names()))
            resolved = store.resolve(name)
        else:
            resolved = store.check_candidate(profile_from_mapping(body, name, "request body"))
    except ProfileError as exc:
        return {"name": name, "valid": False, "message": str(exc), "errors": exc.details()}
    return {"name": name, "valid": True, "chain": resolved.chain, "hash": resolved.hash, "resolved": resolved.settings}


def resolve_submission(body: WorkOrderRequest, settings: Settings) -> tuple[WorkOrderRequest, str | None]:
    """The request with its profile applied, and the profile's hash; a 422 naming the field otherwise."""
    try:
        request, resolved = apply_profile(body, ProfileStore(settings.profiles_dir))
    except ProfileApplyError as exc:
        details: list[dict[str, Any]] = [{"field": f"body.{p.field}", "message": p.message} for p in exc.problems]
        if exc.available is not None:
            details[0]["available"] = exc.available
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise ApiError(422, "validation_error", message, details) from None
    return request, resolved.hash if resolved else None
