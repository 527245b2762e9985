"""Real registries for the image tests: Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1.

- `Pki`: a test CA (openssl), a server certificate for 127.0.0.1, and a
  token-signing certificate;
- `Registry`: one `docker-registry serve` process with its own config and
  storage, TLS from the CA, htpasswd Basic auth or token auth; stopped by
  its owner's finalizer;
- `TokenIssuer`: the token service of the distribution token spec, over TLS:
  grants pull (and push) scopes to a known user, or pull to anyone on
  repositories under public/, as ES256 JWTs with the signing certificate in
  the x5c header (what distribution verifies against its rootcertbundle);
- `build_layout`: umoci layouts pushed with skopeo: a single-platform image,
  one sharing its base layer, a zstd one and a two-platform index;
- `FakeRegistry` and `make_image`: a registry that misbehaves as each test
  scripts it (status codes, redirects, flipped bytes, broken and delayed
  answers), serving images made of hand-written (hostile) layers.
"""
import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
import warnings

from helpers import poll

with warnings.catch_warnings():
    # Deprecated (gone in 3.13), but the one stdlib way to a bcrypt hash, the only kind htpasswd auth takes.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
UMOCI = shutil.which("umoci")
USER = "tester"
PASSWORD = "s3cret-Pa55-word"


def run(*argv, **kwargs):
    result = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, check=False, **kwargs)
    if result.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(map(str, argv)), result.returncode, result.stderr))
    return result.stdout


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pki(object):
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self.ca = os.path.join(directory, "ca.crt")
        ca_key = os.path.join(directory, "ca.key")
        run("openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", self.ca, "-subj", "/CN=daemonless test CA",
            "-days", "3")
        self.key = os.path.join(directory, "server.key")
        self.cert = os.path.join(directory, "server.crt")
        csr = os.path.join(directory, "server.csr")
        run("openssl", "req", *ec, "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1")
        ext = os.path.join(directory, "san.ext")
        with open(ext, "w") as handle:
            handle.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", self.cert, "-days", "3", "-extfile", ext)
        self.signing_key = os.path.join(directory, "token.key")
        self.signing_cert = os.path.join(directory, "token.crt")
        run("openssl", "req", "-x509", *ec, "-keyout", self.signing_key, "-out", self.signing_cert,
            "-subj", "/CN=daemonless test token issuer", "-days", "3")
        # skopeo's --dest-cert-dir wants the CA as *.crt in a directory of its own.
        self.cert_dir = os.path.join(directory, "certs.d")
        os.makedirs(self.cert_dir, exist_ok=True)
        shutil.copy(self.ca, os.path.join(self.cert_dir, "ca.crt"))

    def server_context(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer(object):
    """The token endpoint of a registry in `auth: token` mode, on its own TLS port, in a thread."""

    def __init__(self, pki, service="daemonless-test", issuer="daemonless-test-issuer"):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        self.pki, self.service, self.issuer = pki, service, issuer
        with open(pki.signing_key, "rb") as handle:
            self.key = serialization.load_pem_private_key(handle.read(), password=None)
        with open(pki.signing_cert, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
        self.requests = []           # (authorized user or None, scope)
        self.expire_next = 0         # how many tokens to issue already expired (a refresh test)
        self.lifetime = 300
        issuer_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                issuer_self.answer(self)

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.socket = pki.server_context().wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.realm = "https://127.0.0.1:%d/token" % self.port

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(handler.path).query)
        user = None
        header = handler.headers.get("Authorization") or ""
        if header.startswith("Basic "):
            given = base64.b64decode(header[6:]).decode("utf-8", "replace")
            if given != "%s:%s" % (USER, PASSWORD):
                handler.send_response(401)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                self.requests.append(("refused", None))
                return
            user = USER
        access = []
        for scope in query.get("scope", []):
            kind, _sep, rest = scope.partition(":")
            name, _sep, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = [a for a in wanted if a in ("pull", "push")] if user else \
                (["pull"] if name.startswith("public/") and "pull" in wanted else [])
            if kind == "repository" and granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        self.requests.append((user, query.get("scope", [None])[0]))
        expired = self.expire_next > 0
        if expired:
            self.expire_next -= 1
        body = json.dumps({"token": self.token(user or "", access, expired), "expires_in": self.lifetime}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def token(self, subject, access, expired):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        now = int(time.time())
        start = now - 600 if expired else now - 5
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": start, "nbf": start,
                  "exp": now - 300 if expired else now + self.lifetime, "jti": os.urandom(8).hex(), "access": access}
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]}
        signing_input = (_b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())).encode()
        r, s = decode_dss_signature(self.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return signing_input.decode() + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class Registry(object):
    """`docker-registry serve` on 127.0.0.1:<random port>, TLS; auth htpasswd or token."""

    def __init__(self, directory, pki, token_issuer=None):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        storage = os.path.join(directory, "storage")
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true", "storage:",
                 "  filesystem:", "    rootdirectory: %s" % storage, "  delete:", "    enabled: true",
                 "http:", "  addr: %s" % self.host, "  tls:", "    certificate: %s" % pki.cert,
                 "    key: %s" % pki.key, "auth:"]
        if token_issuer is None:
            htpasswd = os.path.join(directory, "htpasswd")
            with open(htpasswd, "w") as handle:
                # bcrypt, cost 4: distribution accepts nothing else, and the tests need no slow hash.
                handle.write("%s:%s\n" % (USER, crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))))
            lines += ["  htpasswd:", "    realm: daemonless-test", "    path: %s" % htpasswd]
        else:
            lines += ["  token:", "    realm: %s" % token_issuer.realm, "    service: %s" % token_issuer.service,
                      "    issuer: %s" % token_issuer.issuer, "    rootcertbundle: %s" % pki.signing_cert]
        self.config = os.path.join(directory, "config.yml")
        with open(self.config, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(directory, "registry.log"), "wb")
        self.proc = subprocess.Popen([REGISTRY, "serve", self.config], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        context = ssl.create_default_context(cafile=pki.ca)

        def answers():
            if self.proc.poll() is not None:
                raise AssertionError("docker-registry exited: %s" % open(self.log.name).read())
            import urllib.request
            import urllib.error
            try:
                urllib.request.urlopen("https://%s/v2/" % self.host, context=context, timeout=2).close()
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False
            return True
        poll(answers, "docker-registry on %s" % self.host)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def push(pki, layout, tag, dest, creds=True, extra=()):
    argv = [SKOPEO, "copy", "--quiet", "--dest-cert-dir", pki.cert_dir]
    if creds:
        argv += ["--dest-creds", "%s:%s" % (USER, PASSWORD)]
    run(*(argv + list(extra) + ["oci:%s:%s" % (layout, tag), "docker://%s" % dest]))


def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as handle:
        handle.write(data)
    return "sha256:" + digest, len(data)


def _index_entry(layout, tag):
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    return [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]


def build_layout(directory, rootfs_from):
    """An umoci layout with tags: base (busybox), app (base + a layer with /app/hello), arm (as base, arm64
    and a marker file), multi (an index of base for amd64 and arm for arm64), v2 (base + /etc/version)."""
    layout = os.path.join(directory, "layout")
    run(UMOCI, "init", "--layout", layout)
    run(UMOCI, "new", "--image", layout + ":base")
    work = os.path.join(directory, "work")
    run(UMOCI, "unpack", "--image", layout + ":base", work)
    run("cp", "-a", rootfs_from + "/.", os.path.join(work, "rootfs"))
    run(UMOCI, "repack", "--image", layout + ":base", work)
    run(UMOCI, "config", "--image", layout + ":base", "--config.cmd", "sh", "--config.env", "IMAGE=base",
        "--config.workingdir", "/", "--config.label", "org.example.role=test", "--config.exposedports", "8080/tcp")
    shutil.rmtree(work)
    for tag, path, text in (("app", "app/hello", "hello from app\n"), ("v2", "etc/version", "2\n"),
                            ("arm", "etc/arch", "arm64\n")):
        run(UMOCI, "unpack", "--image", layout + ":base", work)
        os.makedirs(os.path.dirname(os.path.join(work, "rootfs", path)), exist_ok=True)
        with open(os.path.join(work, "rootfs", path), "w") as handle:
            handle.write(text)
        run(UMOCI, "repack", "--image", "%s:%s" % (layout, tag), work)
        shutil.rmtree(work)
    run(UMOCI, "config", "--image", layout + ":arm", "--architecture", "arm64", "--config.env", "IMAGE=arm")
    run(UMOCI, "config", "--image", layout + ":app", "--config.env", "IMAGE=app")
    base, arm = _index_entry(layout, "base"), _index_entry(layout, "arm")
    manifests = []
    for entry, platform in ((base, {"os": "linux", "architecture": "amd64"}),
                            (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"})):
        manifests.append({"mediaType": entry["mediaType"], "digest": entry["digest"], "size": entry["size"],
                          "platform": platform})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": manifests}).encode()
    digest, size = _blob(layout, index)
    with open(os.path.join(layout, "index.json")) as handle:
        top = json.load(handle)
    top["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": size,
                             "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    with open(os.path.join(layout, "index.json"), "w") as handle:
        json.dump(top, handle)
    return layout


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(files, layers=None):
    """(manifest bytes, {digest: blob}) of an image: one layer holding FILES {path: bytes}, or LAYERS,
    a list of lists of (tarfile.TarInfo, content bytes), lowest first."""
    if layers is None:
        layers = [[_file_info(path, data) for path, data in files.items()]]
    blobs, descriptors, diff_ids = {}, [], []
    for members in layers:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        layer = gzip.compress(raw.getvalue(), mtime=0)
        blobs[digest_of(layer)] = layer
        diff_ids.append(digest_of(raw.getvalue()))
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": digest_of(layer), "size": len(layer)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    blobs[digest_of(config)] = config
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digest_of(config), "size": len(config)},
                           "layers": descriptors}).encode()
    return manifest, blobs


def _file_info(path, data, mode=0o644):
    info = tarfile.TarInfo(path)
    info.size, info.mode = len(data), mode
    return info, data


class FakeRegistry(object):
    """Serves /v2/, one repository's manifests and blobs; `script` bends the answers per path."""

    def __init__(self, pki, basic_auth=False):
        self.manifests, self.blobs = {}, {}
        self.script = {}            # path -> list of actions consumed one per request
        self.seen = []              # (path, headers dict)
        self.served = []            # paths whose answer was sent whole, in order
        self.basic_auth = basic_auth
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.answer(self)

            do_HEAD = do_GET

        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.socket = pki.server_context().wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def add(self, tag, manifest, blobs):
        self.manifests[tag] = manifest
        self.manifests[digest_of(manifest)] = manifest
        self.blobs.update(blobs)

    def send(self, handler, status, body=b"", headers=None, length=None):
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def answer(self, handler):
        self._answer(handler)
        self.served.append(handler.path)

    def _answer(self, handler):
        path = handler.path
        self.seen.append((path, dict(handler.headers.items())))
        if self.basic_auth and path.startswith("/v2/") and handler.headers.get("Authorization") != \
                "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode():
            return self.send(handler, 401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        actions = self.script.get(path)
        action = actions.pop(0) if actions else None
        if isinstance(action, int):
            return self.send(handler, action, headers={"Retry-After": "0"})
        if isinstance(action, tuple) and action[0] == "redirect":
            return self.send(handler, 307, headers={"Location": action[1]})
        if isinstance(action, tuple) and action[0] == "delay":
            time.sleep(action[1])  # then the answer as usual: a slow registry, not a broken one
        if path == "/v2/":
            return self.send(handler, 200)
        kind, _sep, ref = path[len("/v2/repo/"):].partition("/")
        if kind == "manifests" and ref in self.manifests:
            body = self.manifests[ref]
            if action == "huge":
                return self.send(handler, 200, b"{" * 1024, {"Content-Type": MANIFEST}, length=100 << 20)
            return self.send(handler, 200, body, {"Content-Type": MANIFEST, "Docker-Content-Digest": digest_of(body)})
        if kind == "blobs" and ref in self.blobs:
            body = self.blobs[ref]
            if action == "flip":
                body = body[:-20] + bytes([body[-20] ^ 1]) + body[-19:]
            start = 0
            wanted = handler.headers.get("Range")
            if wanted:
                start = int(wanted.split("=")[1].rstrip("-"))
                handler.send_response(206)
                handler.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1, len(body)))
                handler.send_header("Content-Length", str(len(body) - start))
                handler.end_headers()
                handler.wfile.write(body[start:])
                return
            if action == "break":
                # The whole length announced, half sent, the connection closed: a download broken off.
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body[:len(body) // 2])
                handler.wfile.flush()
                handler.close_connection = True
                handler.connection.shutdown(2)
                return
            return self.send(handler, 200, body)
        return self.send(handler, 404, json.dumps({"errors": [{"code": "NOT_FOUND", "message": "nope"}]}).encode())
