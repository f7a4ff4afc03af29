"""The ablate_run module against the run protocol, in real child processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(code, env=None, pass_fds=(), **kwargs):
    """Runs `code` with ablate_run importable; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_")}
    full_env["PYTHONPATH"] = PYTHON_DIR
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code], env=full_env, pass_fds=pass_fds,
                          capture_output=True, text=True, timeout=60, **kwargs)


class UnderAWorker(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.read_fd, self.write_fd = os.pipe()

    def tearDown(self):
        os.close(self.read_fd)
        self.dir.cleanup()

    def env(self, **more):
        config = os.path.join(self.dir.name, "config.json")
        with open(config, "w") as f:
            json.dump({"lr": 0.5, "optimizer": "adam"}, f)
        env = {
            "ABLATE_CONFIG": config,
            "ABLATE_METRICS_FD": str(self.write_fd),
            "ABLATE_CHECKPOINT_DIR": os.path.join(self.dir.name, "ckpt"),
            "ABLATE_RESUME_STEP": "1200",
        }
        env.update(more)
        return env

    def lines(self):
        os.close(self.write_fd)
        with os.fdopen(self.read_fd, closefd=False) as f:
            return [json.loads(line) for line in f.read().splitlines()]

    def test_metrics_and_checkpoints_go_to_the_descriptor_as_json_lines(self):
        child = run_child(
            "import ablate_run as a\n"
            "assert a.in_ablate()\n"
            "assert a.config() == {'lr': 0.5, 'optimizer': 'adam'}\n"
            "assert a.resume_step() == 1200\n"
            "import os; assert os.path.isdir(a.checkpoint_dir())\n"
            "a.log(1300, {'valid/loss': 1.25}, **{'train/loss': 2})\n"
            "a.checkpoint(1300)\n"
            "print('stdout is the program\\'s own')\n",
            env=self.env(), pass_fds=(self.write_fd,))
        self.assertEqual(child.returncode, 0, child.stderr)
        self.assertEqual(self.lines(), [{"step": 1300, "valid/loss": 1.25, "train/loss": 2},
                                        {"checkpoint": 1300}])
        self.assertEqual(child.stdout, "stdout is the program's own\n")

    def test_what_the_worker_would_refuse_raises_value_error(self):
        child = run_child(
            "import ablate_run as a\n"
            "bad = [lambda: a.log(-1, x=1), lambda: a.log(1.5, x=1), lambda: a.log(1),\n"
            "       lambda: a.log(1, {'bad name': 1}), lambda: a.log(1, x=float('nan')),\n"
            "       lambda: a.log(1, x='high'), lambda: a.log(1, x=True),\n"
            "       lambda: a.log(1, {'step': 2}), lambda: a.checkpoint(-5),\n"
            "       lambda: a.checkpoint(0)]\n"
            "for call in bad:\n"
            "    try:\n"
            "        call()\n"
            "    except ValueError:\n"
            "        continue\n"
            "    raise SystemExit('accepted')\n"
            "a.log(5, x=1)\n"
            "try:\n"
            "    a.log(4, x=1)\n"
            "except ValueError as e:\n"
            "    assert 'below the last step' in str(e)\n"
            "else:\n"
            "    raise SystemExit('a step going back was accepted')\n"
            "a.log(5, y=2)\n"
            "try:\n"
            "    a.log(5, x=3)\n"
            "except ValueError as e:\n"
            "    assert 'already logged at step 5' in str(e)\n"
            "else:\n"
            "    raise SystemExit('a metric logged twice at a step was accepted')\n",
            env=self.env(), pass_fds=(self.write_fd,))
        self.assertEqual(child.returncode, 0, child.stderr + child.stdout)
        self.assertEqual(self.lines(), [{"step": 5, "x": 1}, {"step": 5, "y": 2}])

    def test_sigterm_sets_stopping_so_the_loop_can_checkpoint_and_exit(self):
        child = subprocess.Popen(
            [sys.executable, "-c",
             "import ablate_run as a, sys, time\n"
             "print('ready', flush=True)\n"
             "step = 0\n"
             "while not a.stopping():\n"
             "    step += 1; time.sleep(0.01)\n"
             "a.checkpoint(step)\n"],
            env=dict(self.env(), PYTHONPATH=PYTHON_DIR), pass_fds=(self.write_fd,),
            stdout=subprocess.PIPE, text=True)
        self.assertEqual(child.stdout.readline(), "ready\n")
        time.sleep(0.1)
        child.send_signal(signal.SIGTERM)
        self.assertEqual(child.wait(timeout=30), 0)
        child.stdout.close()
        lines = self.lines()
        self.assertEqual(len(lines), 1)
        self.assertGreater(lines[0]["checkpoint"], 0)


class OnItsOwn(unittest.TestCase):
    def test_a_script_runs_standalone_with_metrics_on_stdout(self):
        with tempfile.TemporaryDirectory() as cwd:
            child = run_child(
                "import ablate_run as a, os\n"
                "assert not a.in_ablate() and a.config() == {} and a.resume_step() == 0\n"
                "assert a.checkpoint_dir() == os.path.join(os.getcwd(), 'checkpoint')\n"
                "a.log(3, loss=0.5)\n"
                "a.checkpoint(3)\n", cwd=cwd)
            self.assertEqual(child.returncode, 0, child.stderr)
            self.assertEqual(child.stdout, '{"step": 3, "loss": 0.5}\n{"checkpoint": 3}\n')
            self.assertTrue(os.path.isdir(os.path.join(cwd, "checkpoint")))

    def test_sigterm_keeps_its_usual_meaning_outside_ablate(self):
        child = subprocess.Popen(
            [sys.executable, "-c", "import ablate_run, time\nprint('ready', flush=True)\n"
             "time.sleep(60)\n"],
            env=dict(os.environ, PYTHONPATH=PYTHON_DIR), stdout=subprocess.PIPE, text=True)
        self.assertEqual(child.stdout.readline(), "ready\n")
        child.send_signal(signal.SIGTERM)
        self.assertEqual(child.wait(timeout=30), -signal.SIGTERM)
        child.stdout.close()


class Packaging(unittest.TestCase):
    def test_pip_installs_the_module_from_the_checkout(self):
        with tempfile.TemporaryDirectory() as work:
            # From a copy: pip's build leaves egg-info and build/ beside the sources.
            source = os.path.join(work, "src")
            shutil.copytree(PYTHON_DIR, source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
            target = os.path.join(work, "installed")
            pip = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                 "--no-build-isolation", "--disable-pip-version-check", "--target", target,
                 source],
                capture_output=True, text=True, timeout=300, cwd=work)
            self.assertEqual(pip.returncode, 0, pip.stderr)
            child = subprocess.run(
                [sys.executable, "-c", "import ablate_run; print(ablate_run.__file__)"],
                env=dict(os.environ, PYTHONPATH=target), capture_output=True, text=True,
                cwd=target, timeout=60)
            self.assertEqual(child.returncode, 0, child.stderr)
            self.assertTrue(child.stdout.startswith(target), child.stdout)


if __name__ == "__main__":
    unittest.main()
