"""`ray job submit --working-dir . -- python -m ray_jobs.train ...`: the same arguments as `edn train`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
