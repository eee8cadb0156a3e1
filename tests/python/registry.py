"""A Schema Registry stand-in for the tests: the REST endpoints of
Confluent's Schema Registry that streamfold and Confluent's clients use,
in memory, on a loopback port.

No registry server can be installed on the test machines (Confluent's is
a JVM service, Karapace needs packages outside the reachable indexes), so
the tests run this, and check it by driving it with confluent-kafka's own
SchemaRegistryClient and serializers (tests/registry.rs). It follows the
API of Confluent Schema Registry 7/8 (which Karapace and Redpanda also
implement): ids shared across subjects for equal schemas, versions per
subject, GUIDs, BACKWARD compatibility for Avro records (a reader field
needs a default unless the writer has it; a changed type must be one of
Avro's promotions), 401 without the configured basic-auth credentials.

    python registry.py PORT [--auth USER:PASSWORD] [--state FILE] [--tls CERT KEY]

prints "ready" once it listens; it serves until killed. With --state it
keeps its schemas in FILE, so that a registry stopped and started again
(a test's outage) still has them.
"""

import base64
import json
import os
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MEDIA = "application/vnd.schemaregistry.v1+json"
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}

lock = threading.Lock()
schemas = []  # index id-1: {"schema", "schemaType", "guid"}
subjects = {}  # subject -> [id of version 1, 2, ...]


def canonical(text, kind):
    if kind == "AVRO":
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    return text


def type_name(t):
    if isinstance(t, dict):
        return t["type"]
    if isinstance(t, list):
        return "union"
    return t


def incompatibilities(new_text, old_text):
    """Why data written with old_text cannot be read with new_text."""
    new, old = json.loads(new_text), json.loads(old_text)
    if not (isinstance(new, dict) and isinstance(old, dict) and new.get("type") == "record"):
        return [] if canonical(new_text, "AVRO") == canonical(old_text, "AVRO") else [
            "only record schemas are compared here"]
    old_fields = {f["name"]: f for f in old["fields"]}
    out = []
    for f in new["fields"]:
        o = old_fields.get(f["name"])
        if o is None:
            if "default" not in f:
                out.append(f"READER_FIELD_MISSING_DEFAULT_VALUE: {f['name']}")
            continue
        a, b = type_name(o["type"]), type_name(f["type"])
        if a == b:
            if a == "union" and o["type"] != f["type"]:
                old_branches = {type_name(x) for x in o["type"]}
                new_branches = {type_name(x) for x in f["type"]}
                if not old_branches <= new_branches:
                    out.append(f"MISSING_UNION_BRANCH: {f['name']}")
            continue
        if b == "union" and a in {type_name(x) for x in f["type"]}:
            continue
        if b not in PROMOTIONS.get(a, set()):
            out.append(f"TYPE_MISMATCH: {f['name']} {a} -> {b}")
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    auth = None

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", MEDIA)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, {"error_code": code, "message": message})

    def authorised(self):
        if Handler.auth is None:
            return True
        header = self.headers.get("Authorization", "")
        if header == "Basic " + base64.b64encode(Handler.auth.encode()).decode():
            return True
        self.error(401, 401, "Unauthorized")
        return False

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def schema_reply(self, sid, **extra):
        s = schemas[sid - 1]
        out = {"id": sid, "guid": s["guid"], "schema": s["schema"], **extra}
        if s["schemaType"] != "AVRO":
            out["schemaType"] = s["schemaType"]
        return out

    def version_of(self, subject, version):
        ids = subjects.get(subject)
        if not ids:
            return None, (404, 40401, f"Subject '{subject}' not found.")
        if version in ("latest", "-1"):
            n = len(ids)
        elif version.isdigit() and 1 <= int(version) <= len(ids):
            n = int(version)
        else:
            return None, (404, 40402, f"Version {version} not found.")
        return n, None

    def do_GET(self):
        if not self.authorised():
            return
        path = self.path.split("?")[0]
        with lock:
            if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                sid = int(m[1])
                if 1 <= sid <= len(schemas):
                    return self.reply(200, self.schema_reply(sid))
                return self.error(404, 40403, f"Schema {sid} not found")
            if m := re.fullmatch(r"/schemas/guids/([0-9a-fA-F-]+)", path):
                for i, s in enumerate(schemas):
                    if s["guid"] == m[1].lower():
                        return self.reply(200, self.schema_reply(i + 1))
                return self.error(404, 40403, f"Schema {m[1]} not found")
            if path == "/subjects":
                return self.reply(200, sorted(subjects))
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                subject = unquote(m[1])
                if subject not in subjects:
                    return self.error(404, 40401, f"Subject '{subject}' not found.")
                return self.reply(200, list(range(1, len(subjects[subject]) + 1)))
            if m := re.fullmatch(r"/subjects/([^/]+)/versions/([^/]+)", path):
                subject = unquote(m[1])
                n, err = self.version_of(subject, m[2])
                if err:
                    return self.error(*err)
                sid = subjects[subject][n - 1]
                return self.reply(200, self.schema_reply(sid, subject=subject, version=n))
            if path in ("/config", "/mode"):
                return self.reply(200, {"compatibilityLevel": "BACKWARD", "mode": "READWRITE"})
        self.error(404, 404, f"no endpoint {path}")

    def do_POST(self):
        if not self.authorised():
            return
        path = self.path.split("?")[0]
        req = self.body()
        kind = req.get("schemaType", "AVRO")
        text = req.get("schema", "")
        with lock:
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                subject = unquote(m[1])
                try:
                    key = canonical(text, kind)
                except ValueError as e:
                    return self.error(422, 42201, f"Invalid schema: {e}")
                sid = next((i + 1 for i, s in enumerate(schemas)
                            if s["schemaType"] == kind and canonical(s["schema"], kind) == key),
                           None)
                ids = subjects.setdefault(subject, [])
                if sid is not None and sid in ids:
                    return self.reply(200, {"id": sid, "guid": schemas[sid - 1]["guid"]})
                if ids and kind == "AVRO":
                    reasons = incompatibilities(text, schemas[ids[-1] - 1]["schema"])
                    if reasons:
                        return self.error(
                            409, 409,
                            "Schema being registered is incompatible with an earlier schema "
                            f"for subject \"{subject}\", details: {reasons}")
                if sid is None:
                    schemas.append({"schema": text, "schemaType": kind,
                                    "guid": str(uuid.uuid4())})
                    sid = len(schemas)
                ids.append(sid)
                save()
                return self.reply(200, {"id": sid, "guid": schemas[sid - 1]["guid"]})
            if m := re.fullmatch(r"/subjects/([^/]+)", path):
                subject = unquote(m[1])
                for n, sid in enumerate(subjects.get(subject, []), 1):
                    s = schemas[sid - 1]
                    if s["schemaType"] == kind and canonical(s["schema"], kind) == canonical(text, kind):
                        return self.reply(200, self.schema_reply(sid, subject=subject, version=n))
                return self.error(404, 40403, "Schema not found")
            if m := re.fullmatch(r"/compatibility/subjects/([^/]+)/versions/([^/]+)", path):
                subject = unquote(m[1])
                n, err = self.version_of(subject, m[2])
                if err:
                    return self.error(*err)
                old = schemas[subjects[subject][n - 1] - 1]["schema"]
                reasons = incompatibilities(text, old) if kind == "AVRO" else []
                return self.reply(200, {"is_compatible": not reasons, "messages": reasons})
        self.error(404, 404, f"no endpoint {path}")


def unquote(s):
    from urllib.parse import unquote as u
    return u(s)


state_file = None


def save():
    if state_file:
        with open(state_file + ".tmp", "w") as f:
            json.dump({"schemas": schemas, "subjects": subjects}, f)
        os.replace(state_file + ".tmp", state_file)


def main():
    global state_file
    import argparse
    args = argparse.ArgumentParser()
    args.add_argument("port", type=int)
    args.add_argument("--auth")
    args.add_argument("--state")
    args.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    a = args.parse_args()
    Handler.auth = a.auth
    state_file = a.state
    if state_file and os.path.exists(state_file):
        with open(state_file) as f:
            saved = json.load(f)
        schemas.extend(saved["schemas"])
        subjects.update(saved["subjects"])
    port = a.port
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if a.tls:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*a.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
