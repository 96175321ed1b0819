"""`ray job submit --working-dir . -- python -m ray_jobs.demo ...`: the same arguments as `edn demo`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
