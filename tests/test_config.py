"""Cluster configuration: settings from env and files, and the Temporal TLS / API-key connection.

The mTLS test terminates TLS in front of the real dev server with certificates made by the
`openssl` command, so the SDK's handshake, client certificate and server-name override are
exercised for real, not just the arguments we pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.service import TLSConfig

from agentgate import temporal_client
from agentgate.config import ConfigError, Settings
from agentgate.temporal_client import client_options, connect, tls_config


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AGENTGATE_* from the outer environment and no stray .env in the working directory."""
    for name in list(os.environ):
        if name.upper().startswith("AGENTGATE_"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


# -- settings sources ----------------------------------------------------------------------


def test_settings_from_env(clean_env, monkeypatch):
    monkeypatch.setenv("AGENTGATE_TEMPORAL_ADDRESS", "temporal.prod:7233")
    monkeypatch.setenv("AGENTGATE_TEMPORAL_NAMESPACE", "agentgate-prod")
    monkeypatch.setenv("AGENTGATE_MAX_CONCURRENT_AGENTS", "8")
    monkeypatch.setenv("AGENTGATE_METRICS_PORT", "9999")
    monkeypatch.setenv("AGENTGATE_TEMPORAL_API_KEY", "sekret")
    monkeypatch.setenv("AGENTGATE_ARTIFACT_DIR", str(clean_env / "shared"))
    s = Settings()
    assert (s.temporal_address, s.temporal_namespace) == ("temporal.prod:7233", "agentgate-prod")
    assert (s.max_concurrent_agents, s.metrics_port, s.metrics_host) == (8, 9999, "127.0.0.1")
    assert s.temporal_api_key.get_secret_value() == "sekret"
    assert "sekret" not in repr(s)
    assert s.runs_dir == (clean_env / "shared").resolve()


def test_artifact_store_defaults_under_home(clean_env):
    s = Settings(home=clean_env / "home")
    assert s.artifact_store == "filesystem"
    assert s.runs_dir == (clean_env / "home" / "runs").resolve()


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("agentgate.yaml", "temporal_address: file.host:7233\nmax_concurrent_agents: 3\ntask_queue: from-file\n"),
        (
            "agentgate.toml",
            'temporal_address = "file.host:7233"\nmax_concurrent_agents = 3\ntask_queue = "from-file"\n',
        ),
        (
            "agentgate.json",
            '{"temporal_address": "file.host:7233", "max_concurrent_agents": 3, "task_queue": "from-file"}',
        ),
        (
            "agentgate.env",
            "AGENTGATE_TEMPORAL_ADDRESS=file.host:7233\nAGENTGATE_MAX_CONCURRENT_AGENTS=3\n"
            "AGENTGATE_TASK_QUEUE=from-file\n",
        ),
    ],
)
def test_settings_from_config_file_env_wins(clean_env, monkeypatch, name, body):
    path = clean_env / name
    path.write_text(body)
    monkeypatch.setenv("AGENTGATE_CONFIG_FILE", str(path))
    monkeypatch.setenv("AGENTGATE_TASK_QUEUE", "from-env")
    s = Settings()
    assert (s.temporal_address, s.max_concurrent_agents) == ("file.host:7233", 3)
    assert s.task_queue == "from-env"
    assert s.config_file == path


def test_config_file_as_constructor_argument(clean_env):
    path = clean_env / "c.yaml"
    path.write_text("temporal_namespace: ns-from-file\n")
    assert Settings(config_file=path).temporal_namespace == "ns-from-file"


def test_config_file_errors_name_the_variable(clean_env, monkeypatch):
    monkeypatch.setenv("AGENTGATE_CONFIG_FILE", str(clean_env / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"AGENTGATE_CONFIG_FILE=.*missing\.yaml: no such file"):
        Settings()

    typo = clean_env / "typo.yaml"
    typo.write_text("temporal_adress: x:7233\n")
    monkeypatch.setenv("AGENTGATE_CONFIG_FILE", str(typo))
    with pytest.raises(ConfigError, match="unknown setting.*temporal_adress"):
        Settings()

    odd = clean_env / "settings.ini"
    odd.write_text("[x]\n")
    monkeypatch.setenv("AGENTGATE_CONFIG_FILE", str(odd))
    with pytest.raises(ConfigError, match="unknown format"):
        Settings()

    broken = clean_env / "broken.toml"
    broken.write_text("temporal_address = \n")
    monkeypatch.setenv("AGENTGATE_CONFIG_FILE", str(broken))
    with pytest.raises(ConfigError, match="cannot parse"):
        Settings()


def test_s3_artifact_store_is_refused_with_the_alternative(clean_env, monkeypatch):
    monkeypatch.setenv("AGENTGATE_ARTIFACT_STORE", "s3")
    monkeypatch.setenv("AGENTGATE_ARTIFACT_S3_BUCKET", "b")
    with pytest.raises(ValidationError, match="AGENTGATE_ARTIFACT_DIR on a shared volume"):
        Settings()


# -- Temporal connection options -------------------------------------------------------------


def test_plaintext_by_default(clean_env):
    opts = client_options(Settings())
    assert opts["tls"] is None and opts["api_key"] is None
    assert opts["namespace"] == "default"


def test_api_key_leaves_tls_to_the_sdk(clean_env):
    opts = client_options(Settings(temporal_api_key="k", temporal_namespace="ns.acct"))
    # None + api_key: the SDK switches TLS on with the system roots (Temporal Cloud).
    assert opts["api_key"] == "k" and opts["tls"] is None
    assert client_options(Settings(temporal_api_key="k", temporal_tls=False))["tls"] is False
    assert client_options(Settings(temporal_tls=True))["tls"] is True


def test_tls_files_are_read(clean_env):
    pem = {n: f"-----BEGIN {n}-----\nAAAA\n-----END {n}-----\n".encode() for n in ("CA", "CERT", "KEY")}
    for n, data in pem.items():
        (clean_env / n).write_bytes(data)
    cfg = tls_config(
        Settings(
            temporal_tls_server_root_ca_cert=clean_env / "CA",
            temporal_tls_client_cert=clean_env / "CERT",
            temporal_tls_client_key=clean_env / "KEY",
            temporal_tls_server_name="temporal.internal",
        )
    )
    assert isinstance(cfg, TLSConfig)
    assert (cfg.server_root_ca_cert, cfg.client_cert, cfg.client_private_key) == (pem["CA"], pem["CERT"], pem["KEY"])
    assert cfg.domain == "temporal.internal"


def test_tls_misconfiguration_is_named(clean_env):
    with pytest.raises(ConfigError, match=r"AGENTGATE_TEMPORAL_TLS_SERVER_ROOT_CA_CERT=.*nope\.pem: file not found"):
        tls_config(Settings(temporal_tls_server_root_ca_cert=clean_env / "nope.pem"))
    with pytest.raises(ConfigError, match="AGENTGATE_TEMPORAL_TLS_CLIENT_CERT and AGENTGATE_TEMPORAL_TLS_CLIENT_KEY"):
        tls_config(Settings(temporal_tls_client_cert=clean_env / "c.pem"))
    (clean_env / "junk").write_text("not a certificate")
    with pytest.raises(ConfigError, match="AGENTGATE_TEMPORAL_TLS_SERVER_ROOT_CA_CERT=.*not a PEM file"):
        tls_config(Settings(temporal_tls_server_root_ca_cert=clean_env / "junk"))
    with pytest.raises(ConfigError, match="AGENTGATE_TEMPORAL_TLS=false contradicts"):
        tls_config(Settings(temporal_tls=False, temporal_tls_server_name="x"))


async def test_connect_passes_settings_to_the_sdk(clean_env, monkeypatch):
    seen = {}

    async def fake_connect(target, **kwargs):
        seen.update(kwargs, target=target)
        return "client"

    monkeypatch.setattr(temporal_client.Client, "connect", fake_connect)
    s = Settings(temporal_address="x.tmprl.cloud:7233", temporal_namespace="x.acct", temporal_api_key="k")
    assert await connect(s, identity="me") == "client"
    assert seen["target"] == "x.tmprl.cloud:7233"
    assert (seen["namespace"], seen["api_key"], seen["tls"], seen["identity"]) == ("x.acct", "k", None, "me")


# -- a real mTLS handshake against the dev server --------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(d: Path) -> None:
    """A throw-away CA, a server certificate for `temporal.test` only, and a client certificate."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=agentgate-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    for name, ext in (
        ("server", "subjectAltName=DNS:temporal.test\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}.test", cwd=d)
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2" if name == "server" else "3",
            "-days",
            "1",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
            cwd=d,
        )


@contextlib.asynccontextmanager
async def _mtls_proxy(pki: Path, upstream: str):
    """TLS terminator that demands a client certificate from our CA, then pipes to the dev server."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(pki / "server.crt", pki / "server.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    host, port = upstream.rsplit(":", 1)
    peers: list[str] = []
    tasks: set[asyncio.Task] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert") or {}
        peers.extend(v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        for t in (asyncio.ensure_future(pipe(reader, up_writer)), asyncio.ensure_future(pipe(up_reader, writer))):
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", peers
    finally:
        server.close()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is needed to make test certificates")
async def test_mtls_connection_through_tls_terminator(dev_env, clean_env, tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    upstream = dev_env.client.service_client.config.target_host
    async with _mtls_proxy(pki, upstream) as (address, peers):
        s = Settings(
            temporal_address=address,
            temporal_tls_server_root_ca_cert=pki / "ca.crt",
            temporal_tls_client_cert=pki / "client.crt",
            temporal_tls_client_key=pki / "client.key",
            # the server certificate names temporal.test, not 127.0.0.1: only the override makes it verify
            temporal_tls_server_name="temporal.test",
        )
        client = await connect(s)
        assert await client.service_client.check_health()
        assert "client.test" in peers

        for missing in (
            {"temporal_tls_client_cert": None, "temporal_tls_client_key": None},
            {"temporal_tls_server_name": None},
        ):
            with pytest.raises(RuntimeError):
                await asyncio.wait_for(connect(s.model_copy(update=missing)), timeout=20)


def test_docs_name_every_setting():
    """docs/deploy.md lists each setting; keep it honest when a field is added."""
    doc = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text()
    missing = [f"AGENTGATE_{name.upper()}" for name in Settings.model_fields if f"AGENTGATE_{name.upper()}" not in doc]
    assert not missing, f"docs/deploy.md does not mention {missing}"
