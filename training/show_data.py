"""Check a data config from the shell: build the gin-bound dataset, print its counts and three item texts.

    python -m training.show_data configs/data/amazon_beauty.gin \
        --gin 'load_amazon.root = "../shared/data/amazon-2014-beauty"'
"""

import argparse
from collections.abc import Sequence

from data.registry import build_dataset, summary
from data.schema import RawDataset
from training.cli import load_gin, run_cli


def main(argv: Sequence[str] | None = None) -> RawDataset:
    """Parses data configs plus --gin bindings, builds the dataset and prints its summary and 3 item texts."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("configs", nargs="+", help="gin files, e.g. configs/data/amazon_beauty.gin")
    parser.add_argument(
        "--gin", action="append", default=[], help="extra binding, e.g. 'load_amazon.root=\"x\"'"
    )
    args = parser.parse_args(argv)
    load_gin(args.configs, args.gin)
    dataset = build_dataset()
    print(summary(dataset))
    for key, text in list(zip(dataset.item_keys, dataset.item_texts))[:3]:
        print(f"  {key}: {text}")
    return dataset


if __name__ == "__main__":
    run_cli(main)
