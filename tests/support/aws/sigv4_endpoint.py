"""An OTLP/HTTP endpoint for tests that checks AWS Signature Version 4 the way
AWS does, with botocore's signer (an implementation this project did not
write): it recomputes each request's signature over the headers the request
says it signed, with the expected key, secret and session token, for the
signing name expected on the request's path, and refuses (403) what does not
match. Every request is recorded; GET /_requests returns them as JSON (body
base64, after gunzip) so the Rust test decodes and counts the data.

Usage: python sigv4_endpoint.py --access-key AK --secret-key SK [--token T]
  --region R --service v1/traces=xray --service v1/logs=logs ...
  [--tamper] (change one byte of every body before checking: a body changed
  after signing). Prints "PORT <n>" once listening on 127.0.0.1.
"""

import argparse
import base64
import datetime
import gzip
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;\-]+), Signature=([0-9a-f]{64})$"
)
MAX_BODY = 16 * 1024 * 1024


def check(args, method, path, headers, body):
    """None when the signature is valid, else why not."""
    auth = headers.get("authorization", "")
    m = AUTH_RE.match(auth)
    if not m:
        return "no SigV4 Authorization header"
    key, day, region, service, signed, signature = m.groups()
    if key != args.access_key:
        return "unknown access key"
    expected_service = args.services.get(path)
    if expected_service is None:
        return "no signing name for " + path
    if service != expected_service:
        return "signed for service %s, expected %s" % (service, expected_service)
    if region != args.region:
        return "signed for region %s, expected %s" % (region, args.region)
    signed_names = signed.split(";")
    if "host" not in signed_names or "x-amz-date" not in signed_names:
        return "host and x-amz-date must be signed"
    if args.token is not None:
        if headers.get("x-amz-security-token") != args.token:
            return "missing or wrong x-amz-security-token"
        if "x-amz-security-token" not in signed_names:
            return "x-amz-security-token not signed"
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError:
        return "bad x-amz-date"
    if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 300:
        return "x-amz-date too far from now"
    if amz_date[:8] != day:
        return "credential date differs from x-amz-date"
    for name in signed_names:
        if name not in headers:
            return "signed header %s is missing" % name
    request = AWSRequest(
        method=method,
        url="http://%s%s" % (headers["host"], path),
        data=body,
        headers={name: headers[name] for name in signed_names},
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(args.access_key, args.secret_key, args.token), service, region)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    if signer.signature(string_to_sign, request) != signature:
        return "signature does not match"
    return None


def make_handler(args, records, lock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path != "/_requests":
                self.send_error(404)
                return
            with lock:
                out = json.dumps(records).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length)
            if args.tamper and body:
                body = bytes([body[0] ^ 1]) + body[1:]
            # Header names lower-case; a repeated header joined as AWS does.
            headers = {}
            for k, v in self.headers.items():
                k = k.lower()
                headers[k] = headers[k] + "," + v.strip() if k in headers else v.strip()
            path = self.path.split("?")[0]
            reason = check(args, "POST", path, headers, body)
            data = body
            if reason is None and headers.get("content-encoding") == "gzip":
                data = gzip.decompress(body)
            with lock:
                records.append(
                    {
                        "path": path,
                        "ok": reason is None,
                        "reason": reason,
                        "token": headers.get("x-amz-security-token"),
                        "service": args.services.get(path),
                        "body": base64.b64encode(data).decode() if reason is None else "",
                    }
                )
            if reason is None:
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()
            else:
                out = json.dumps({"message": reason}).encode()
                self.send_response(403)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--token")
    p.add_argument("--region", required=True)
    p.add_argument("--service", action="append", default=[])
    p.add_argument("--tamper", action="store_true")
    args = p.parse_args()
    args.services = {}
    for s in args.service:
        path, name = s.split("=", 1)
        args.services["/" + path.lstrip("/")] = name
    records, lock = [], threading.Lock()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, records, lock))
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
