"""L0 contracts on real repositories: forbidden/required files, schemas, naming and the secret scan."""

from __future__ import annotations

from agentgate.verification.contracts import check_contracts
from agentgate.verification.plan import ContractsSection, parse_verify_yaml
from agentgate.verification.runner import _reader
from tests.vhelpers import Repo

GH_TOKEN = "ghp_" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c"


def contracts(yaml_text: str = "version: 1\n") -> ContractsSection:
    return parse_verify_yaml(yaml_text).contracts


async def failures(repo: Repo, cfg: ContractsSection) -> list:
    diff = await repo.diff()
    return [r for r in check_contracts(cfg, diff, _reader(str(repo.path))) if not r.passed]


async def test_clean_change_passes(tmp_path):
    repo = Repo(tmp_path / "r", {"app.py": "x = 1\n", ".env.example": "TOKEN=\n"})
    repo.write({"app.py": "import os\n\nTOKEN = os.environ['TOKEN']\n"})
    assert await failures(repo, contracts()) == []


async def test_forbidden_files_by_default(tmp_path):
    repo = Repo(tmp_path / "r", {"app.py": "x = 1\n"})
    repo.write({".env": "A=1\n", "deploy/server.pem": "x\n", "keys/id_rsa": "x\n", ".env.example": "A=\n"})
    bad = await failures(repo, contracts())
    assert sorted(r.file for r in bad if r.kind == "forbidden_file") == [".env", "deploy/server.pem", "keys/id_rsa"]


async def test_required_files_and_extra_forbidden(tmp_path):
    cfg = contracts("version: 1\ncontracts:\n  required_files: [README.md, 'src/*.py']\n  forbidden_files: ['*.db']\n")
    repo = Repo(tmp_path / "r", {"src/a.py": "x = 1\n"})
    repo.write({"data.db": "x"})
    bad = await failures(repo, cfg)
    assert {(r.kind, r.file) for r in bad} == {("required_file", "README.md"), ("forbidden_file", "data.db")}


async def test_schema_rules_inline_and_from_file(tmp_path):
    cfg = contracts(
        "version: 1\ncontracts:\n  schemas:\n"
        "    - files: 'config/*.json'\n      schema: {type: object, required: [name]}\n"
        "    - files: 'deploy/*.yaml'\n      schema_file: schemas/deploy.json\n"
    )
    repo = Repo(
        tmp_path / "r",
        {
            "config/a.json": '{"name": "a"}',
            "deploy/app.yaml": "replicas: 2\n",
            "schemas/deploy.json": '{"properties": {"replicas": {"type": "integer", "maximum": 5}}}',
        },
    )
    assert await failures(repo, cfg) == []
    repo.write({"config/b.json": '{"title": 1}', "deploy/app.yaml": "replicas: 50\n", "config/c.json": "{oops"})
    bad = {r.file: r.message for r in await failures(repo, cfg)}
    assert "'name' is a required property" in bad["config/b.json"]
    assert "replicas: 50 is greater than the maximum of 5" in bad["deploy/app.yaml"]
    assert "does not parse" in bad["config/c.json"]


async def test_naming_conventions_apply_to_new_files(tmp_path):
    cfg = contracts("version: 1\ncontracts:\n  naming:\n    - files: 'src/**/*.py'\n      pattern: '[a-z_]+\\.py'\n")
    repo = Repo(tmp_path / "r", {"src/LegacyName.py": "x = 1\n"})
    repo.write({"src/LegacyName.py": "x = 2\n", "src/pkg/good_name.py": "", "src/pkg/BadName.py": ""})
    assert [r.file for r in await failures(repo, cfg)] == ["src/pkg/BadName.py"]


async def test_secret_scan_finds_known_formats_with_line_and_masks_them(tmp_path):
    repo = Repo(tmp_path / "r", {"settings.py": "DEBUG = False\n"})
    repo.write(
        {
            "settings.py": "DEBUG = False\n"
            f"GITHUB_TOKEN = '{GH_TOKEN}'\n"
            "AWS_KEY = 'AKIAQWERTYUIOPASDFGH'\n"
            "SLACK = 'xoxb-123456789012-abcdefghijkl'\n"
            "STRIPE = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'\n"
            "DB = 'postgres://admin:s3cr3tpw@db.internal/app'\n"
            "SAFE_DB = 'postgres://admin:${DB_PASSWORD}@db/app'\n",
            "deploy/key.txt": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
        }
    )
    bad = [r for r in await failures(repo, contracts()) if r.kind == "secret"]
    found = {(r.file, r.line): r.message for r in bad}
    assert ("settings.py", 2) in found and "GitHub token" in found[("settings.py", 2)]
    assert "AWS access key id" in found[("settings.py", 3)]
    assert "Slack token" in found[("settings.py", 4)]
    assert "Stripe live key" in found[("settings.py", 5)]
    assert "URL with a password" in found[("settings.py", 6)]
    assert ("settings.py", 7) not in found
    assert "private key" in found[("deploy/key.txt", 1)]
    assert all(GH_TOKEN not in r.message and "s3cr3tpw" not in r.message for r in bad)


async def test_high_entropy_strings_and_the_allowlist(tmp_path):
    blob = "Zx8Qm2LrT9vBn4KcW7yHd3Fp6Js1Ga5E"
    repo = Repo(tmp_path / "r", {"a.py": ""})
    repo.write(
        {"a.py": f"KEY = '{blob}'\nSHA = '3f786850e387550fdab836ed7e6dc881de23001b'\nname = 'a_long_identifier_name'\n"}
    )
    bad = await failures(repo, contracts())
    assert [(r.line, "high-entropy" in r.message) for r in bad] == [(1, True)]
    allowed = contracts("version: 1\ncontracts:\n  secrets:\n    allowlist: ['^Zx8Qm']\n")
    assert await failures(repo, allowed) == []


async def test_secret_already_in_the_base_is_not_the_agents(tmp_path):
    repo = Repo(tmp_path / "r", {"legacy.py": f"T = '{GH_TOKEN}'\n"})
    repo.write({"legacy.py": f"T = '{GH_TOKEN}'\nX = 1\n"})
    assert await failures(repo, contracts()) == []
