"""Signed URLs leave no secret on disk or in logs, and https is never downgraded silently."""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import subprocess

import pytest

from jaxhub._src import hub
from jaxhub._src.cli import main
from jaxhub._src.hub.urls import canonical_url

from .helpers import entries, staging, tree_digest
from .server import HubServer, Route

_SIGNATURE = "a9f3c0ffee5ec2e7"
_CREDENTIAL = "AKIAEXAMPLEKEY"


def _signed(url: str, signature: str = _SIGNATURE) -> str:
    # An S3 presigned URL of one version of an object.
    return (f"{url}?versionId=7&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
            f"{_CREDENTIAL}%2F20260101&X-Amz-Expires=3600&X-Amz-Signature={signature}")


def _everything_written(cache: pathlib.Path) -> str:
    """Every name under the cache, and the text of every file that is not module data."""
    seen = []
    for dirpath, dirnames, filenames in os.walk(cache):
        seen += [os.path.join(dirpath, name) for name in dirnames + filenames]
        for name in filenames:
            if name.endswith(".json"):
                seen.append(pathlib.Path(dirpath, name).read_text())
    return "\n".join(seen)


def test_signed_url_leaves_no_secret_and_hits_the_cache(server, published, cache, caplog,
                                                        capsys):
    url, _, module_dir = published
    server.routes[_path(url)].fail_first = 1  # so a retry is logged
    with caplog.at_level(logging.DEBUG, logger="jaxhub"):
        path = hub.resolve(_signed(url), cache_dir=cache)
        # Another signature of the same object is the same entry: no second download.
        again = hub.resolve(_signed(url, signature="0123456789abcdef"), cache_dir=cache)
    assert again == path and tree_digest(path) == tree_digest(module_dir)
    assert server.bodies[_path(url)] == 1
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    listed = capsys.readouterr().out
    assert f"{url}?versionId=7" in listed  # the part that names the object is kept
    assert "retrying" in caplog.text
    for text in (_everything_written(cache), caplog.text, listed):
        assert _SIGNATURE not in text and _CREDENTIAL not in text and "X-Amz" not in text
    # The signed URL itself removes the entry.
    assert main(["cache", "rm", _signed(url), "--cache-dir", str(cache)]) == 0
    assert entries(cache) == []


def test_errors_name_the_url_without_its_secrets(server, cache):
    url = server.add("/expired/module.tar.gz", Route(status=403))
    with pytest.raises(hub.DownloadError) as error:
        hub.resolve(_signed(url), cache_dir=cache)
    assert str(error.value) == (f"HTTP 403 Forbidden for {url}?versionId=7 (access denied: "
                                "the module may be private or the URL expired)")


def test_extra_secret_parameters_come_from_the_environment(server, published, cache,
                                                           monkeypatch):
    url = published[0]
    monkeypatch.setenv("JAXHUB_URL_SECRET_PARAMS", "MyToken, other")
    path = hub.resolve(f"{url}?mytoken=hunter2&lang=en", cache_dir=cache)
    assert "hunter2" not in _everything_written(cache)
    assert hub.resolve(f"{url}?lang=en&mytoken=other-value", cache_dir=cache) == path
    assert server.bodies[_path(url)] == 1


@pytest.mark.parametrize("url, expected", [
    ("https://u:pw@host/m.tgz#frag", "https://host/m.tgz"),
    ("https://host/m.tgz?sig=x&se=2026&sv=1&sp=r&sr=b", "https://host/m.tgz"),
    ("https://host/m?X-Goog-Signature=x&X-Goog-Date=1&tf-hub-format=compressed",
     "https://host/m?tf-hub-format=compressed"),
    ("https://host/m.tgz?Expires=1&Signature=x&Key-Pair-Id=k", "https://host/m.tgz"),
    ("https://host/get?model=bert&version=2", "https://host/get?model=bert&version=2"),
    ("/a/local/path?x=1", "/a/local/path?x=1"),
])
def test_canonical_url_drops_credentials_and_keeps_identity(url, expected):
    assert canonical_url(url) == expected


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An https server on 127.0.0.1 whose self-signed certificate the test trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with HubServer(tls=(str(cert), str(key))) as running:
        running.certificate = cert
        yield running


def test_https_to_http_redirect_is_refused_unless_allowed(tls_server, published, cache,
                                                          monkeypatch):
    url, _, module_dir = published
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.certificate))
    archive = module_dir.parent / "module.tar.gz"  # what `published` serves over http
    secure = tls_server.add("/secure/module.tar.gz", Route(body=archive.read_bytes()))
    assert tree_digest(hub.resolve(secure, cache_dir=cache)) == tree_digest(module_dir)
    downgrade = tls_server.add("/downgrade/module.tar.gz", Route(redirect=url))
    with pytest.raises(hub.DownloadError) as error:
        hub.resolve(downgrade, cache_dir=cache)
    assert str(error.value).startswith(f"{downgrade} redirects from https to http ({url})")
    assert "JAXHUB_ALLOW_INSECURE_REDIRECTS=1" in str(error.value)
    assert len(entries(cache)) == 1 and staging(cache) == []
    monkeypatch.setenv("JAXHUB_ALLOW_INSECURE_REDIRECTS", "1")
    assert tree_digest(hub.resolve(downgrade, cache_dir=cache)) == tree_digest(module_dir)


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
