"""`ray job submit --working-dir . -- python -m ray_jobs.synth ...`: the same arguments as `edn synth`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
