"""`ray job submit --working-dir . -- python -m ray_jobs.export_model ...`: the same arguments as `edn export-model`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["export-model", *sys.argv[1:]]))
