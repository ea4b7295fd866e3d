#!/usr/bin/env python3
"""Mints N buyer JWTs (HS256, sub = 1..N) for load tests: mint_tokens.py SECRET N > file."""
import base64, hashlib, hmac, json, sys, time

def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

secret, n = sys.argv[1].encode(), int(sys.argv[2])
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
exp = int(time.time()) + 3600
for user in range(1, n + 1):
    payload = b64(json.dumps({"sub": str(user), "exp": exp}).encode())
    signing = f"{header}.{payload}".encode()
    sig = b64(hmac.new(secret, signing, hashlib.sha256).digest())
    print(f"{header}.{payload}.{sig}")
