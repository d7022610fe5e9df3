"""`freqtrade-opt` finds its commands by walking `freqtrade_opt_plugin.commands`."""

from __future__ import annotations

import sys

import pytest

from freqtrade_opt_plugin import commands
from freqtrade_opt_plugin.cli import main
from freqtrade_opt_plugin.commands import command_modules


COMMANDS = ("status", "report", "reset", "cache", "verify", "bench", "microbench", "demo", "init")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_found_and_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"freqtrade-opt {command}" in capsys.readouterr().out


def test_helper_modules_are_not_commands():
    assert "freqtrade_opt_plugin.commands.bench" in command_modules()
    assert not any(name.rsplit(".", 1)[1].startswith("_") for name in command_modules())


def test_a_new_command_module_is_found_without_editing_the_cli(tmp_path, monkeypatch, capsys):
    (tmp_path / "hello.py").write_text(
        "def _hello(args):\n"
        "    print('hello', args.name)\n"
        "    return 0\n\n\n"
        "def register(subparsers):\n"
        "    parser = subparsers.add_parser('hello', help='say hello')\n"
        "    parser.add_argument('name')\n"
        "    parser.set_defaults(func=_hello)\n"
    )
    monkeypatch.setattr(commands, "__path__", [*commands.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "freqtrade_opt_plugin.commands.hello", raising=False)
    try:
        assert "freqtrade_opt_plugin.commands.hello" in command_modules()
        assert main(["hello", "world"]) == 0
        assert capsys.readouterr().out == "hello world\n"
    finally:
        sys.modules.pop("freqtrade_opt_plugin.commands.hello", None)
