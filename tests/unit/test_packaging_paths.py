"""Where an installed agent keeps things, extras named when missing, and one registry error for duplicate names."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from agent import paths
from agent.config import load_settings
from agent.errors import ConfigError
from agent.extras import MissingExtra, missing_extra, require


class TestDefaults:
    def test_root_follows_the_fhs(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """As root: config in /etc, journal in /var/lib, audit log in /var/log."""
        monkeypatch.setattr(paths.os, "geteuid", lambda: 0)
        monkeypatch.delenv("AGENT_STATE_DIR", raising=False)
        assert paths.config_dir() == Path("/etc/containment-agent")
        assert paths.state_dir() == Path("/var/lib/containment-agent")
        assert paths.audit_dir() == Path("/var/log/containment-agent/audit")

    @pytest.mark.parametrize("uid", [0, 1000])
    def test_agent_state_dir_moves_journal_and_audit(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     uid: int) -> None:
        """$AGENT_STATE_DIR puts the default journal and audit log elsewhere, for root too — a second instance
        (or a test session run as root) never shares the real agent's /var/lib journal. Relative: ignored."""
        monkeypatch.setattr(paths.os, "geteuid", lambda: uid)
        monkeypatch.setenv("AGENT_STATE_DIR", str(tmp_path / "st"))
        assert paths.state_dir() == tmp_path / "st"
        assert paths.audit_dir() == tmp_path / "st" / "audit"
        (tmp_path / "agent.yaml").write_text("inventory: inventory.yaml\n")
        settings = load_settings(tmp_path / "agent.yaml")
        assert Path(settings.database_url().removeprefix("sqlite:///")).parent == tmp_path / "st"
        assert settings.audit_dir == tmp_path / "st" / "audit"
        monkeypatch.setenv("AGENT_STATE_DIR", "relative")
        assert paths.state_dir() != Path("relative")

    def test_others_follow_xdg(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Not root: $XDG_CONFIG_HOME / $XDG_STATE_HOME, falling back to ~/.config and ~/.local/state."""
        monkeypatch.setattr(paths.os, "geteuid", lambda: 1000)
        monkeypatch.delenv("AGENT_STATE_DIR", raising=False)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "s"))
        assert paths.config_dir() == tmp_path / "c" / "containment-agent"
        assert paths.state_dir() == tmp_path / "s" / "containment-agent"
        assert paths.audit_dir() == tmp_path / "s" / "containment-agent" / "audit"
        monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")  # the XDG spec: relative values are invalid
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert paths.state_dir() == tmp_path / "home" / ".local" / "state" / "containment-agent"

    def test_settings_never_default_next_to_the_config(self, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
        """An agent.yaml naming only its inventory keeps journal and audit log in the state folders, and reads the
        shipped runbooks and obligations table (the old defaults put the journal into /etc beside the config)."""
        monkeypatch.setattr(paths.os, "geteuid", lambda: 1000)
        monkeypatch.delenv("AGENT_STATE_DIR", raising=False)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc" / "agent.yaml").write_text("inventory: inventory.yaml\n")
        settings = load_settings(tmp_path / "etc" / "agent.yaml")
        assert settings.database == str(tmp_path / "state" / "containment-agent" / "agent.db")
        assert settings.audit_dir == tmp_path / "state" / "containment-agent" / "audit"
        assert settings.runbooks == paths.shipped_runbooks() and (settings.runbooks / "isolate-host.yaml").exists()
        assert settings.obligations == paths.shipped_obligations() and settings.obligations.exists()
        assert not str(settings.database).startswith(str(tmp_path / "etc"))

    def test_shipped_files_are_package_data(self) -> None:
        """The runbooks, example configuration and obligations table live inside the agent package."""
        import agent
        package = Path(agent.__file__).parent
        assert paths.shipped_runbooks().is_relative_to(package)
        from importlib.resources import files  # where the package's resources are: the same folder
        assert paths.shipped("runbooks") == Path(str(files("agent").joinpath("data", "runbooks"))).resolve()
        assert (paths.shipped("config") / "inventory.yaml").exists()
        with pytest.raises(FileNotFoundError, match="reinstall"):
            paths.shipped("nope.yaml")


class TestExtras:
    @pytest.mark.parametrize(("module", "extra"), [("winrm", "windows"), ("ldap3.core", "ad"),
                                                   ("netmiko", "firewall"), ("weasyprint", "report"),
                                                   ("gssapi.raw", "kerberos")])
    def test_error_names_the_extra(self, module: str, extra: str) -> None:
        err = missing_extra(module, "connector 'x'")
        assert isinstance(err, MissingExtra) and f"pip install 'containment-agent[{extra}]'" in str(err)

    def test_require_checks_without_importing(self) -> None:
        require("json", "test")
        with pytest.raises(MissingExtra, match="not installed"):
            require("surely_not_a_module_here", "agent report")

    def test_registry_names_the_extra_of_a_connector(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A connector whose library is missing fails with the extra to install, not a ModuleNotFoundError."""
        from agent import registry

        class Point(EntryPoint):
            def load(self) -> object:
                raise ModuleNotFoundError("No module named 'ldap3'", name="ldap3")

        monkeypatch.setattr(registry, "installed_points",
                            lambda: {"active_directory": Point("active_directory", "x:Y", registry.GROUP)})
        with pytest.raises(MissingExtra, match=r"connector 'active_directory' needs .*containment-agent\[ad\]"):
            registry.Registry().get("active_directory")


class TestRegistryDuplicates:
    def test_two_plugins_under_one_name_is_one_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Like nornir: a second plugin never silently replaces the first; the error names both."""
        from agent import registry

        points = [EntryPoint("ssh_linux", "connectors.ssh_linux:SshLinuxConnector", registry.GROUP),
                  EntryPoint("ssh_linux", "evil_plugin:Impostor", registry.GROUP),
                  EntryPoint("firewall", "connectors.firewall:FirewallConnector", registry.GROUP)]
        monkeypatch.setattr(registry, "_scan", lambda: {registry.GROUP: points})
        registry.installed_points.cache_clear()
        try:
            with pytest.raises(ConfigError, match=r"'ssh_linux' by connectors\.ssh_linux:SshLinuxConnector "
                                                  r"and by evil_plugin:Impostor"):
                registry.Registry()
        finally:
            registry.installed_points.cache_clear()

    def test_the_same_plugin_seen_twice_is_not_a_clash(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from agent import registry

        same = EntryPoint("ssh_linux", "connectors.ssh_linux:SshLinuxConnector", registry.GROUP)
        monkeypatch.setattr(registry, "_scan", lambda: {registry.GROUP: [same, same]})
        registry.installed_points.cache_clear()
        try:
            assert registry.Registry().names() == ["ssh_linux"]
        finally:
            registry.installed_points.cache_clear()
