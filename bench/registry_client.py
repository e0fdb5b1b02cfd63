"""A minimal OCI Distribution client for the benchmark's pushes.

Why not curl: a chunked push is a chain of requests whose URL each answer decides (Distribution
puts its upload state in the Location's query), so curl would need one process and one TCP
connection per chunk, which costs more than the chunk itself at these speeds. This client keeps
one keep-alive connection per push, like real clients do, and sends request bodies with
sendfile(2) straight from the page cache, so the client spends as little of the machine's two
cores as possible and the same on both registries.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.parse
from dataclasses import dataclass

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


class RegistryError(Exception):
    """A request answered something other than what the protocol says it must."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Client:
    """One keep-alive HTTP/1.1 connection to a registry at http://host:port."""

    def __init__(self, base_url: str, timeout: float = 600.0):
        parsed = urllib.parse.urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _target(self, url: str) -> str:
        """The request target of a URL or path (Distribution answers absolute Locations, Wharf
        relative ones)."""
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(self.base_url + "/", url))
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                body: bytes = b"", file=None, offset: int = 0, count: int = 0) -> Response:
        """Sends one request; the body is `body`, or `count` bytes of `file` from `offset`."""
        headers = dict(headers or {})
        length = count if file is not None else len(body)
        self.conn.putrequest(method, self._target(url), skip_accept_encoding=True)
        if method in ("POST", "PUT", "PATCH") or length:
            headers["Content-Length"] = str(length)
        for name, value in headers.items():
            self.conn.putheader(name, value)
        self.conn.endheaders()
        if file is not None:
            sent = self.conn.sock.sendfile(file, offset, count)
            if sent != count:
                raise RegistryError(f"sent {sent} of {count} bytes")
        elif body:
            self.conn.sock.sendall(body)
        resp = self.conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.headers, data)

    def expect(self, want: int, method: str, url: str, **kwargs) -> Response:
        resp = self.request(method, url, **kwargs)
        if resp.status != want:
            raise RegistryError(f"{method} {url}: {resp.status} (wanted {want}): {resp.body[:300]!r}")
        return resp

    def read_through(self, url: str) -> None:
        """GETs `url`, expecting 200, and reads the body into a reused buffer rather than
        keeping it (a blob may be larger than memory)."""
        self.conn.putrequest("GET", self._target(url), skip_accept_encoding=True)
        self.conn.endheaders()
        resp = self.conn.getresponse()
        if resp.status != 200:
            raise RegistryError(f"GET {url}: {resp.status}: {resp.read()[:300]!r}")
        buf = bytearray(1 << 20)
        while resp.readinto(buf):
            pass

    # --- uploads -----------------------------------------------------------------------------

    def open_upload(self, repo: str) -> str:
        resp = self.expect(202, "POST", f"/v2/{repo}/blobs/uploads/")
        return resp.headers["Location"]

    @staticmethod
    def with_digest(location: str, digest: str) -> str:
        sep = "&" if "?" in location else "?"
        return f"{location}{sep}digest={urllib.parse.quote(digest, safe=':')}"

    def push_monolithic(self, repo: str, path: str, digest: str) -> None:
        """POST to open a session, then one PUT carrying the whole blob (Distribution 2.8 does
        not take the content on the POST itself)."""
        location = self.open_upload(repo)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            self.expect(201, "PUT", self.with_digest(location, digest), file=f, count=size,
                        headers={"Content-Type": "application/octet-stream"})

    def push_chunked(self, repo: str, path: str, digest: str, chunk: int) -> None:
        """POST, one PATCH per `chunk` bytes with its Content-Range, then an empty PUT."""
        location = self.open_upload(repo)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            for start in range(0, size, chunk):
                n = min(chunk, size - start)
                resp = self.expect(202, "PATCH", location, file=f, offset=start, count=n, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + n - 1}",
                })
                location = resp.headers["Location"]
        self.expect(201, "PUT", self.with_digest(location, digest))

    def push_bytes(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = self.open_upload(repo)
        self.expect(201, "PUT", self.with_digest(location, digest), body=data,
                    headers={"Content-Type": "application/octet-stream"})
        return digest

    def push_manifest(self, repo: str, reference: str, manifest: bytes,
                      media_type: str = OCI_MANIFEST) -> None:
        self.expect(201, "PUT", f"/v2/{repo}/manifests/{reference}", body=manifest,
                    headers={"Content-Type": media_type})


def mount_image(client: Client, source: str, repo: str, digests: dict, manifest: bytes) -> None:
    """Makes `repo` a repository holding `source`'s small image: its two blobs mounted (both
    registries mount with `from`), its manifest put under the tag `v0`."""
    for blob in (digests["layer"], digests["config"]):
        client.expect(201, "POST", f"/v2/{repo}/blobs/uploads/?mount={blob}&from={source}")
    client.push_manifest(repo, "v0", manifest)


def referrer(client: Client, repo: str, subject: dict, n: int) -> None:
    """Pushes an artifact whose subject is `subject` (a descriptor), by digest."""
    config = b"{}"
    client.push_bytes(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": 2}],
        "subject": subject,
        "annotations": {"org.example.n": str(n)},
    }).encode()
    client.push_manifest(repo, "sha256:" + hashlib.sha256(manifest).hexdigest(), manifest)


def small_image(client: Client, repo: str, tags: list[str]) -> dict:
    """Pushes a small image (one config, one 1 KiB layer) under every tag in `tags`; answers
    the digests the small-request loads use."""
    layer = os.urandom(1024)
    layer_digest = client.push_bytes(repo, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest = client.push_bytes(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
    }).encode()
    for tag in tags:
        client.push_manifest(repo, tag, manifest)
    return {"layer": layer_digest, "config": config_digest,
            "manifest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
            "manifest_bytes": manifest}
