"""`ray job submit --working-dir . -- python -m ray_jobs.render_catalog ...`: the same arguments as
`edn render-catalog`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["render-catalog", *sys.argv[1:]]))
