"""`ray job submit --working-dir . -- python -m ray_jobs.ingest ...`: the same arguments as `edn ingest`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
