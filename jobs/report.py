"""Render the run report of an existing label table: one self-contained HTML page.

Examples
--------
python jobs/report.py out/labels                        # the latest partition
python jobs/report.py s3://bucket/artsy --run-date 2026-12-01 --out report.html

The page shows counts per label, emotion and error reason, a histogram of p_positive, how often
each model agrees with the ensemble, contact sheets (most positive / negative / least certain,
each emotion) and failed files, and the trend over earlier partitions. Thumbnails are decoded
from the few files shown, read where the table's ``path`` column says. Exit codes: 0 written,
2 bad arguments (no such output or partition).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

EXIT_OK, EXIT_INVALID = 0, 2


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, render the report; return the exit code."""
    parser = argparse.ArgumentParser(prog="report.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="root of the label table (local path or URI)")
    parser.add_argument("--run-date", metavar="YYYY-MM-DD", help="partition (default: latest)")
    parser.add_argument("--out", metavar="FILE",
                        help="HTML file to write (default: artsy-report-<run_date>.html)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from artsy.job import output, run_report

    try:
        location = output.locate(args.output)
        partitions = output.committed_partitions(location)
    except (ValueError, OSError) as error:
        print(f"report.py: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_INVALID
    if not partitions:
        print(f"report.py: error: no committed partition under {args.output}", file=sys.stderr)
        return EXIT_INVALID
    name = (output.partition_name(args.run_date) if args.run_date else max(partitions))
    if name not in partitions:
        print(f"report.py: error: no partition {name} under {args.output}; have "
              f"{', '.join(sorted(partitions))}", file=sys.stderr)
        return EXIT_INVALID
    folder = partitions[name]
    try:
        with location.filesystem.open_input_stream(f"{folder}/{output.SUMMARY_NAME}") as stream:
            summary = json.loads(stream.read())
    except (OSError, ValueError):
        summary = {"run_date": name.split("=", 1)[1]}
    target = args.out or f"artsy-report-{name.split('=', 1)[1]}.html"
    run_report.write_report(location, folder, summary, path=target)
    print(f"wrote {target}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
