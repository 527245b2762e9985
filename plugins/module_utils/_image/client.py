# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client of the OCI distribution API (pull side), over ansible.module_utils.urls.

Ansible's own HTTP layer gives certificate checks (validate_certs, ca_path),
proxies from the environment and timeouts, so a managed host needs nothing
new. What the registry says is hostile input:

- Authentication follows the registry's challenge (GET /v2/): Bearer tokens
  fetched from the realm for the repository's pull scope (anonymously or
  with the credentials), cached until they expire and fetched again on a
  401; or Basic. Credentials never appear in an error or a result.
- Redirects are followed here, not by urllib: a redirect to another host
  (blob storage) never carries the registry's Authorization header, and
  there are at most MAX_REDIRECTS of them (a loop ends).
- 429 and 5xx are retried with a bounded backoff; a blob download that
  breaks off resumes with a Range request.
- Sizes are capped (a manifest over MAX_MANIFEST is refused before it is
  read whole), every manifest and blob is checked against its sha256, and a
  blob is written only to the file the store gives, which it admits once
  the digest matches.

What a request costs is paid once per registry, not per request: one
SSLContext (Ansible's make_context: the CA file, or the whole system CA
directory without ca_path, parsed once) and one ansible.module_utils.urls
Request carry every request of a pull. urllib closes each connection after
its response (it sends `Connection: close`), so a pull still makes one TLS
handshake per request; the number of requests is kept to what the
distribution API needs (the /v2/ challenge, the manifest, an index's
manifest, each blob).
"""
import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
from http import cookiejar

from ansible_collections.daemonless.oci.plugins.module_utils._image.media import (  # noqa: F401 (re-exported)
    DEFAULT_TIMEOUT, MAX_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# ansible.module_utils.urls imports cryptography.x509 only to hash a server's certificate
# for GSSAPI channel binding, which a registry pull never uses: 40 ms of the pull's start
# (a third of what the engine adds to the module floor). Hidden while urls is imported (it
# then does without channel binding), and visible again right after, so any later import
# of cryptography.x509 in the process works as usual.
_HIDE_X509 = "cryptography.x509" not in sys.modules and "ansible.module_utils.urls" not in sys.modules
if _HIDE_X509:
    sys.modules["cryptography.x509"] = None  # type: ignore[assignment]
try:
    from ansible.module_utils.urls import Request, make_context
finally:
    if _HIDE_X509 and sys.modules.get("cryptography.x509", False) is None:
        del sys.modules["cryptography.x509"]

MAX_TOKEN_RESPONSE = 1 << 20
MAX_ERROR_BODY = 4096
MAX_REDIRECTS = 5
RETRIES = 4
BACKOFF = 0.25           # seconds, doubled each retry
MAX_RETRY_AFTER = 5.0
RESUMES = 3
CHUNK = 1 << 20
TOKEN_LIFETIME = 60      # the distribution token spec's default for expires_in

ACCEPT_MANIFESTS = ", ".join((MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST))

_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')
_TRANSIENT = (socket.timeout, ConnectionError, http.client.IncompleteRead, http.client.RemoteDisconnected)


class RegistryError(OCIError):
    """An error from or about a registry; STATUS the HTTP status when there was one."""

    def __init__(self, message, status=None):
        OCIError.__init__(self, message)
        self.status = status


def parse_challenge(header):
    """(scheme, {param: value}) of a WWW-Authenticate header (one challenge), scheme lowercased."""
    scheme, _sep, rest = (header or "").strip().partition(" ")
    params = {}
    for match in _CHALLENGE_PARAM.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
    return scheme.lower(), params


def _host_of(url):
    parts = urllib.parse.urlsplit(url)
    return (parts.scheme, parts.hostname, parts.port)


def _read_capped(response, limit, what):
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RegistryError("%s: %s bytes, more than the %d accepted" % (what, length, limit))
    data = response.read(limit + 1)
    if len(data) > limit:
        raise RegistryError("%s: more than the %d bytes accepted" % (what, limit))
    return data


def _error_text(response):
    """The registry's error message (distribution's {"errors": [{code, message}]}), short, or ''."""
    try:
        body = response.read(MAX_ERROR_BODY)
        errors = json.loads(body.decode("utf-8", "replace")).get("errors") or []
        return "; ".join("%s: %s" % (str(e.get("code", ""))[:64], str(e.get("message", ""))[:200])
                         for e in errors[:3] if isinstance(e, dict))
    except Exception:  # any body at all: a message is a courtesy, not a requirement
        return ""


class Registry(object):
    """One registry (API host), credentials and TLS settings; tokens cached per scope."""

    def __init__(self, api_host, username=None, password=None, validate_certs=True, ca_path=None,
                 timeout=DEFAULT_TIMEOUT, scheme="https"):
        self.base = "%s://%s" % (scheme, api_host)
        self.api_host = api_host
        self.username = username
        self.password = password
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.challenge = None        # (scheme, params) once /v2/ answered 401
        self.tokens = {}             # scope -> (token, expiry)
        self.downloaded = 0          # bytes of manifests and blobs received
        self._count_lock = threading.Lock()  # blobs download in parallel threads
        self._http = None            # the Request every request goes through, made on first use

    def _request(self):
        """The one Request (and SSLContext) of this registry; errors in ca_path name it."""
        if self._http is None:
            try:
                context = make_context(cafile=self.ca_path, validate_certs=self.validate_certs)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise RegistryError("registry %s: ca_path %s: %s" % (self.api_host, self.ca_path or "(system CAs)",
                                                                     getattr(exc, "strerror", None) or exc))
            self._http = Request(use_proxy=True, timeout=self.timeout, validate_certs=self.validate_certs,
                                 http_agent="daemonless.oci", follow_redirects="none", use_netrc=False,
                                 context=context)
        return self._http

    # -- HTTP

    def _open(self, url, method="GET", headers=None):
        """The response to one request, redirects followed here; HTTPError for 4xx/5xx responses."""
        headers = dict(headers or {})
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                # A fresh cookie jar per request, as open_url gives: nothing a registry sets travels on.
                return self._request().open(method, url, headers=headers, cookies=cookiejar.CookieJar())
            except urllib.error.HTTPError as exc:
                if exc.code not in (301, 302, 303, 307, 308):
                    raise
                location = exc.headers.get("Location")
                exc.close()
                if not location:
                    raise RegistryError("%s %s: redirect without a Location" % (method, url), exc.code)
                target = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(target).scheme not in ("https", "http"):
                    raise RegistryError("%s %s: redirect to a non-HTTP location" % (method, url), exc.code)
                if urllib.parse.urlsplit(url).scheme == "https" and urllib.parse.urlsplit(target).scheme != "https":
                    # A downgrade would send the request, and what comes back, in the clear.
                    raise RegistryError("%s %s: redirect from https to plain http refused" % (method, url), exc.code)
                if _host_of(target) != _host_of(url):
                    # Blob storage elsewhere gets a signed URL, never the registry's credentials.
                    headers.pop("Authorization", None)
                url = target
        raise RegistryError("%s: more than %d redirects" % (url, MAX_REDIRECTS))

    def _describe(self, exc, what):
        if isinstance(exc, urllib.error.HTTPError):
            detail = _error_text(exc)
            return RegistryError("%s: HTTP %d %s%s" % (what, exc.code, exc.reason, ": " + detail if detail else ""),
                                 exc.code)
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError) or isinstance(exc, ssl.SSLError):
            return RegistryError("%s: TLS failure (%s); give ca_path with the registry's CA, or (unsafely) "
                                 "validate_certs=false" % (what, reason))
        return RegistryError("%s: cannot reach the registry: %s" % (what, reason))

    def request(self, path, what, method="GET", headers=None, scope=None):
        """The response to METHOD on PATH of the API, authenticated as the challenge asks, retried."""
        url = self.base + path
        refreshed = False
        attempt = 0
        while True:
            hdrs = dict(headers or {})
            auth = self._authorization(scope)
            if auth:
                hdrs["Authorization"] = auth
            try:
                return self._open(url, method, hdrs)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and not refreshed:
                    refreshed = True
                    self._learn_challenge(exc.headers.get("WWW-Authenticate"), what)
                    self.tokens.pop(scope, None)
                    exc.close()
                    continue
                if (exc.code == 429 or exc.code >= 500) and attempt < RETRIES:
                    self._backoff(attempt, exc.headers.get("Retry-After"))
                    exc.close()
                    attempt += 1
                    continue
                raise self._describe(exc, what)
            except RegistryError:
                raise
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                if isinstance(exc, _TRANSIENT) and attempt < RETRIES:
                    self._backoff(attempt, None)
                    attempt += 1
                    continue
                raise self._describe(exc, what)

    def _count(self, received):
        with self._count_lock:
            self.downloaded += received

    def _backoff(self, attempt, retry_after):
        delay = BACKOFF * (2 ** attempt)
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
        time.sleep(delay)

    # -- authentication

    def _learn_challenge(self, header, what):
        scheme, params = parse_challenge(header)
        if scheme not in ("bearer", "basic"):
            raise RegistryError("%s: HTTP 401, and the registry's challenge %r is neither Bearer nor Basic"
                                % (what, scheme or "(none)"), 401)
        if scheme == "basic" and not self.username:
            raise RegistryError("%s: the registry wants a username and password (Basic auth)" % what, 401)
        if self.challenge is not None and self.challenge[0] == "basic" and scheme == "basic":
            raise RegistryError("%s: HTTP 401: the registry refused the username and password" % what, 401)
        self.challenge = (scheme, params)

    def _authorization(self, scope):
        if self.challenge is None:
            return None
        scheme, params = self.challenge
        if scheme == "basic":
            raw = ("%s:%s" % (self.username, self.password or "")).encode("utf-8")
            return "Basic " + base64.b64encode(raw).decode("ascii")
        token, expiry = self.tokens.get(scope, (None, 0))
        if token is None or time.monotonic() >= expiry:
            token, expiry = self._fetch_token(params, scope)
            self.tokens[scope] = (token, expiry)
        return "Bearer " + token

    def _fetch_token(self, params, scope):
        realm = params.get("realm")
        if not realm or urllib.parse.urlsplit(realm).scheme not in ("https", "http"):
            raise RegistryError("registry %s: Bearer challenge without a usable realm" % self.api_host)
        query = [("service", params["service"])] if params.get("service") else []
        if scope:
            query.append(("scope", scope))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {}
        if self.username:
            raw = ("%s:%s" % (self.username, self.password or "")).encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        what = "token from %s" % urllib.parse.urlsplit(realm).netloc
        try:
            response = self._open(url, "GET", headers)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                exc.close()
                raise RegistryError("%s: HTTP %d: the token service refused %s" % (
                    what, exc.code, "the username and password" if self.username else "anonymous access"), exc.code)
            raise self._describe(exc, what)
        except RegistryError:
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            raise self._describe(exc, what)
        with response:
            data = _read_capped(response, MAX_TOKEN_RESPONSE, what)
        try:
            body = json.loads(data.decode("utf-8"))
        except ValueError:
            raise RegistryError("%s: the answer is not JSON" % what)
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise RegistryError("%s: the answer holds no token" % what)
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = TOKEN_LIFETIME
        # Renewed a little early: a token that expires in flight costs a 401 and a retry.
        return token, time.monotonic() + max(1, lifetime - 5)

    def ping(self):
        """GET /v2/: the challenge, before anything else (a 401 here is expected)."""
        try:
            response = self._open(self.base + "/v2/", "GET", {})
            response.close()
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise self._describe(exc, "registry %s" % self.api_host)
            self._learn_challenge(exc.headers.get("WWW-Authenticate"), "registry %s" % self.api_host)
            exc.close()
        except RegistryError:
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            raise self._describe(exc, "registry %s" % self.api_host)

    # -- manifests and blobs

    def manifest(self, repository, reference, head=False):
        """(body bytes or None, media type, digest) of REPOSITORY's manifest REFERENCE (a tag or digest).

        The digest is computed from the body; for a pinned digest, the body
        must hash to it. With HEAD, only the registry's Docker-Content-Digest.
        """
        what = "manifest %s/%s:%s" % (self.api_host, repository, reference)
        response = self.request("/v2/%s/manifests/%s" % (repository, reference), what,
                                method="HEAD" if head else "GET", headers={"Accept": ACCEPT_MANIFESTS},
                                scope="repository:%s:pull" % repository)
        with response:
            media = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            if head:
                digest = response.headers.get("Docker-Content-Digest")
                if not digest or not re.match(r"^sha256:[a-f0-9]{64}$", digest):
                    return None, media, None
                return None, media, digest
            data = _read_capped(response, MAX_MANIFEST, what)
        self._count(len(data))
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError("%s: content hashes to %s, not the digest asked for" % (what, digest))
        return data, media, digest

    def fetch_blob(self, repository, digest, size, handle):
        """Write blob DIGEST (SIZE bytes) of REPOSITORY to HANDLE (a new binary file), resuming with Range.

        Returns DIGEST once the content hashed to it (what Store.admit takes). Raises
        RegistryError when the content is longer than SIZE or does not hash to DIGEST;
        HANDLE then holds something unusable.
        """
        what = "blob %s of %s/%s" % (digest, self.api_host, repository)
        algorithm, _sep, expected = digest.partition(":")
        if algorithm != "sha256":
            raise RegistryError("%s: only sha256 digests are fetched" % what)
        hasher = hashlib.sha256()
        written = 0
        resumes = 0
        # One buffer for the whole blob: each read lands in it, is hashed and written from it,
        # instead of a new megabyte of bytes per read.
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while True:
            headers = {"Range": "bytes=%d-" % written} if written else {}
            response = self.request("/v2/%s/blobs/%s" % (repository, digest), what, headers=headers,
                                    scope="repository:%s:pull" % repository)
            try:
                if written and response.status != 206:
                    # No Range support: start over.
                    handle.seek(0)
                    handle.truncate()
                    hasher, written = hashlib.sha256(), 0
                while True:
                    count = response.readinto(buffer)
                    if not count:
                        break
                    written += count
                    self._count(count)
                    if written > size:
                        raise RegistryError("%s: more than the %d bytes its descriptor says" % (what, size))
                    hasher.update(view[:count])
                    handle.write(view[:count])
            except _TRANSIENT as exc:
                if resumes >= RESUMES:
                    raise RegistryError("%s: download broke off at %d of %d bytes: %s" % (what, written, size, exc))
                resumes += 1
                continue
            finally:
                response.close()
            if written < size and resumes < RESUMES:
                # The connection closed early without an error: resume too.
                resumes += 1
                continue
            break
        if written != size:
            raise RegistryError("%s: %d bytes received, its descriptor says %d" % (what, written, size))
        if hasher.hexdigest() != expected:
            raise RegistryError("%s: content hashes to sha256:%s, not its digest; nothing stored"
                                % (what, hasher.hexdigest()))
        handle.flush()
        return digest
