"""A program that breaks the run protocol in the way --mode names, for
tests/program_test.cc. Standard library only; writes the protocol's metrics
lines to the descriptor ABLATE_METRICS_FD names."""

import os
import sys
import time


def main():
    mode = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--mode="))
    metrics = os.fdopen(int(os.environ["ABLATE_METRICS_FD"]), "w", buffering=1)
    if mode == "crash":
        metrics.write('{"step": 1, "x": 0.5}\n')
        print("loading the batch", file=sys.stderr)
        print("RuntimeError: the program broke at step 2", file=sys.stderr)
        sys.exit(3)
    if mode == "hang":
        metrics.write('{"step": 1, "x": 0.5}\n')
        metrics.flush()
        while True:
            time.sleep(60)
    if mode == "flood":
        line = "x" * 1023 + "\n"
        for _ in range(64 * 1024):  # 64 MiB on stdout
            sys.stdout.write(line)
        sys.stdout.flush()
        metrics.write('{"step": 1, "x": 0.25}\n')
        return
    if mode == "malformed":
        for bad in ["not json", "[1, 2]", '{"x": 1}', '{"step": -1, "x": 1}',
                    '{"step": 2.5, "x": 1}', '{"step": 3, "x": "high"}',
                    '{"step": 4, "x": NaN}', '{"step": 5, "bad name": 1}']:
            metrics.write(bad + "\n")
        metrics.write('{"step": 10, "x": 0.75}\n')
        metrics.write('{"step": 9, "x": 0.5}\n')  # backwards: refused
        metrics.write('{"step": 20, "x": 0.125}\n')
        return
    sys.exit("unknown --mode " + mode)


if __name__ == "__main__":
    main()
