"""/v1/knowledge-bases (thin): list, create, show, upload documents, delete one, rebuild,
lineage, search."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from luodi.serve.auth import Principal
from luodi.serve.deps import admitted, authenticated, gateway_of
from luodi.serve.kb.schemas import KBCreate, KBRebuild, KBSearch
from luodi.serve.kb.service import KBService

PREFIX = "/v1/knowledge-bases"
UPLOAD_PATH = re.compile(rf"^{re.escape(PREFIX)}/[^/]+/documents/?$")
"""The upload route's path: its POST bodies get limits.max_upload_bytes (serve.middleware)."""


def _service(request: Request) -> KBService:
    return KBService(gateway_of(request).store)


def make_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["knowledge bases"])

    @router.get("", summary="List your team's knowledge bases")
    async def list_kbs(request: Request, p: Principal = Depends(authenticated)) -> Any:
        return await asyncio.to_thread(_service(request).list, p)

    @router.post("", summary="Create a knowledge base", status_code=201)
    async def create(
        body: KBCreate, request: Request, p: Principal = Depends(admitted("kb.write"))
    ) -> Any:
        return await asyncio.to_thread(_service(request).create, p, body)

    @router.get("/{name}", summary="Show a knowledge base: documents and versions")
    async def show(name: str, request: Request, p: Principal = Depends(authenticated)) -> Any:
        return await asyncio.to_thread(_service(request).show, p, name)

    @router.post("/{name}/documents", summary="Upload documents (multipart: files, tags)")
    async def add(
        name: str,
        request: Request,
        files: list[UploadFile] = File(..., description="Documents in any supported format."),
        tags: list[str] = Form(default=[], description="Tags (repeatable or comma-separated)."),
        p: Principal = Depends(admitted("kb.write")),
    ) -> Any:
        uploads = [(f.filename or "", await f.read()) for f in files]
        return await asyncio.to_thread(_service(request).add, p, name, uploads, tags)

    @router.delete("/{name}/documents/{doc:path}", summary="Delete a document (id or name)")
    async def delete(
        name: str, doc: str, request: Request, p: Principal = Depends(admitted("kb.write"))
    ) -> Any:
        return await asyncio.to_thread(_service(request).delete, p, name, doc)

    @router.post("/{name}/rebuild", summary="Re-chunk and re-embed every document (new version)")
    async def rebuild(
        name: str,
        request: Request,
        body: KBRebuild | None = None,
        p: Principal = Depends(admitted("kb.write")),
    ) -> Any:
        return await asyncio.to_thread(_service(request).rebuild, p, name, body or KBRebuild())

    @router.get("/{name}/lineage", summary="Versions and source files (sha256) behind a version")
    async def lineage(name: str, request: Request, p: Principal = Depends(authenticated)) -> Any:
        return await asyncio.to_thread(_service(request).lineage, p, name)

    @router.post("/{name}/search", summary="Retrieve the chunks best matching a query")
    async def search(
        name: str,
        body: KBSearch,
        request: Request,
        p: Principal = Depends(admitted("kb.search")),
    ) -> dict[str, Any]:
        return await asyncio.to_thread(_service(request).search, p, name, body)

    return router
