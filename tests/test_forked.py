"""tests/forked.py, the launcher the script tests run through: a child must behave as `python script args` would."""

import os
import signal

import pytest

from tests import forked
from tests.conftest import ROOT

CHILD = """
import json, os, sys
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "env": dict(os.environ),
                  "stdin": sys.stdin.read(), "project": sorted({"models", "data", "run", "cli"} & set(sys.modules)),
                  "tensorflow": "tensorflow" in sys.modules}))
print("to stderr", file=sys.stderr)
raise SystemExit(int(sys.argv[1]))
"""


def test_a_child_gets_exactly_its_arguments_folder_and_environment(tmp_path):
    import json

    result = forked.run_code(CHILD, "3", "b c", cwd=tmp_path, env={"ONLY": "this"})
    assert result.returncode == 3 and result.stderr == "to stderr\n"
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["-c", "3", "b c"] and seen["cwd"] == str(tmp_path) and seen["path0"] == ""
    seen["env"].pop("LC_CTYPE", None)  # a fresh interpreter sets it itself (PEP 538's locale coercion)
    assert seen["env"] == {"ONLY": "this"} and seen["stdin"] == ""
    # The libraries are imported once, in the fork server; the project's modules are not.
    assert seen["project"] == [] and seen["tensorflow"] == (not forked.FRESH)


def test_a_script_runs_as_main_and_its_exceptions_and_signals_end_it_as_python_would(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys\nprint(__name__, sys.argv[1:], sys.path[0])\n"
                      "if sys.argv[1] == 'raise':\n    raise ValueError('boom')\n"
                      "if sys.argv[1] == 'kill':\n    import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
                      "if sys.argv[1] == 'interrupt':\n    raise KeyboardInterrupt\n"
                      "if sys.argv[1] == 'draw':\n    import numpy; print(numpy.random.random())\n"
                      "sys.exit('a message')\n")
    env = {"PYTHONPATH": str(ROOT)}
    result = forked.run(script, "exit", cwd=ROOT, env=env)
    assert result.stdout == f"__main__ ['exit'] {tmp_path}\n"
    assert (result.returncode, result.stderr) == (1, "a message\n")
    result = forked.run(script, "raise", cwd=ROOT, env=env)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == "ValueError: boom"
    assert forked.run(script, "kill", cwd=ROOT, env=env).returncode == -signal.SIGKILL
    assert forked.run(script, "interrupt", cwd=ROOT, env=env).returncode == -signal.SIGINT
    draws = {forked.run(script, "draw", cwd=ROOT, env=env).stdout.split()[-1] for _ in range(2)}
    assert len(draws) == 2  # each child its own global NumPy state


def test_a_launched_script_can_be_signalled_and_a_timeout_kills_it(tmp_path):
    import subprocess
    import time

    ready = tmp_path / "ready"
    waiting = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
               "open(sys.argv[1], 'w').close()\ntime.sleep(60)\n")
    launched = forked.launch("-c", waiting, ready, cwd=tmp_path, env={})
    assert launched.pid != os.getpid()
    deadline = time.monotonic() + 60
    while not ready.exists():  # until its handler is in place
        assert launched.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(subprocess.TimeoutExpired):
        launched.wait(timeout=0.2)
    launched.send_signal(signal.SIGTERM)
    assert launched.wait(timeout=60) == 143 and launched.poll() == 143
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        forked.run_code("import sys, time; print('started'); sys.stdout.flush(); print('late', file=sys.stderr); "
                        "sys.stderr.flush(); time.sleep(60)", cwd=tmp_path, env={}, timeout=1)
    assert (expired.value.output, expired.value.stderr) == ("started\n", "late\n")  # what it printed before


def test_code_run_with_c_is_the_module_main(tmp_path):
    code = "import sys\nx = 7\nimport __main__\nprint(__name__, __main__.x, sys.modules['__main__'].x)\n"
    result = forked.run_code(code, cwd=tmp_path, env={})
    assert (result.returncode, result.stdout) == (0, "__main__ 7 7\n"), result.stderr
