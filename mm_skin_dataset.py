"""MM-Skin: the authors' release -> Arrow tables -> a Hub-ready Parquet folder.

The MM-Skin release (Zeng et al., arXiv 2505.06152) ships as CSV files plus a folder of PNG
figures cut from 15 dermatology textbooks. This module turns the user's own copy into

* a `datasets` builder, :class:`MMSkin` (``MMSkin(config_name="vqa", data_dir=RELEASE)``), and
* a folder of Parquet shards + dataset card (``mm-skin build RELEASE --out mm-skin``) that
  ``datasets.load_dataset("mm-skin", "vqa")`` loads with no code of ours, and that
  ``mm-skin push`` uploads to the Hub in one commit.

Both routes share one generator (:func:`mm_skin.tables.iter_tables`): it reads the CSVs once,
validates every row, refuses image paths that leave the release (:mod:`mm_skin.paths`), reads
each image file once as raw bytes, checks that it decodes without decoding its pixels
(:mod:`mm_skin.images`), and yields pyarrow tables in the exact Arrow layout of the ``datasets``
features.
The work lives in the torch-free :mod:`mm_skin` package, one module per job; this module is the
builder and the CLI.

Example::

    >>> from mm_skin_dataset import build
    >>> result = build("examples/mm-skin-sample", "/tmp/mm-skin", overwrite=True)  # doctest: +SKIP
    >>> import datasets
    >>> datasets.load_dataset("/tmp/mm-skin", "vqa", split="test")[0]["answer"]  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import datasets
import pyarrow as pa

from mm_skin import __version__, cli, hub
from mm_skin.audit import AuditOptions, run_audit_command, summary_line
from mm_skin.benchmarks import BENCHMARKS
from mm_skin.benchmarks.write import build_benchmark
from mm_skin.build import BuildResult, build
from mm_skin.card import citation
from mm_skin.demographics import parse_age_sex
from mm_skin.hub import PushError, push_dataset_folder, validate_folder
from mm_skin.messages import llava_to_messages
from mm_skin.release import SAMPLE_RELEASE, ReleasePlan, load_release, parse_modality_map
from mm_skin.report import REPORT_FILE, ReleaseError, StrictError, short_repr
from mm_skin.schema import (
    ALL_CONFIGS,
    CAPTION_FEATURES,
    DEFAULT_CONFIG,
    INSTRUCT_FEATURES,
    MODALITIES,
    MODALITY_ALIASES,
    TEXTBOOKS,
    VQA_FEATURES,
    features_for,
)
from mm_skin.tables import iter_instruct_tables, iter_tables

__all__ = [
    "ALL_CONFIGS",
    "CAPTION_FEATURES",
    "INSTRUCT_FEATURES",
    "MODALITIES",
    "MODALITY_ALIASES",
    "TEXTBOOKS",
    "VQA_FEATURES",
    "BuildOptions",
    "BuildResult",
    "MMSkin",
    "MMSkinConfig",
    "PushError",
    "ReleaseError",
    "StrictError",
    "build",
    "features_for",
    "iter_instruct_tables",
    "iter_tables",
    "llava_to_messages",
    "load_release",
    "main",
    "make_parser",
    "parse_age_sex",
    "parse_modality_map",
    "push_dataset_folder",
    "validate_folder",
]

VERSION = __version__  # kept for callers of mm_skin_dataset.VERSION


# --------------------------------------------------------------------------------------------
# The datasets builder
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class MMSkinConfig(datasets.BuilderConfig):
    """Options of the MM-Skin builder (``data_dir`` is the release)."""

    test_csv: str | None = None
    instruct_json: tuple[str, ...] | None = None
    modality_map: tuple[str, ...] = ()  # "VALUE=MODALITY" strings, as on the command line
    num_proc: int = 4


class MMSkin(datasets.ArrowBasedBuilder):
    """MM-Skin from the authors' release: ``MMSkin(config_name="vqa", data_dir=RELEASE)``.

    >>> builder = MMSkin(config_name="vqa", data_dir="examples/mm-skin-sample")  # doctest: +SKIP
    >>> builder.download_and_prepare(); ds = builder.as_dataset(split="test")  # doctest: +SKIP
    """

    BUILDER_CONFIG_CLASS = MMSkinConfig
    BUILDER_CONFIGS = [
        MMSkinConfig(name="vqa", description="Open-ended VQA pairs (MM-Skin-O) with their image."),
        MMSkinConfig(name="clinical", description="Captioned clinical photographs (MM-Skin-C/D)."),
        MMSkinConfig(name="dermoscopic", description="Captioned dermoscopy images (MM-Skin-C/D)."),
        MMSkinConfig(name="pathology", description="Captioned histopathology images (MM-Skin-C/D)."),
        MMSkinConfig(name="captions", description="All captioned images (the three modality configs)."),
        MMSkinConfig(name="instruct", description="LLaVA instruction data as chat messages (TRL vision SFT form)."),
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="MM-Skin (arXiv 2505.06152): dermatology image-text data from 15 textbooks.",
            features=features_for(self.config.name),
            citation=citation(),
        )

    def _plan(self) -> ReleasePlan:
        if getattr(self, "_release_plan", None) is None:
            if not self.config.data_dir:
                raise ReleaseError("MMSkin needs data_dir=<the MM-Skin release folder>")
            self._release_plan = load_release(
                self.config.data_dir,
                test_csv=self.config.test_csv,
                instruct_json=list(self.config.instruct_json) if self.config.instruct_json else None,
                modality_map=parse_modality_map(self.config.modality_map),
            )
        return self._release_plan

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        plan = self._plan()
        splits = plan.splits(self.config.name)
        if not splits:
            raise ReleaseError(
                f"config {self.config.name!r} has no rows in {self.config.data_dir}"
                + (" (pass instruct_json=[...] or put Dataframe/Pretrain/vqa_MM.json in the release)" if self.config.name == "instruct" else "")
            )
        return [datasets.SplitGenerator(name=s, gen_kwargs={"split": s}) for s in splits]

    def _generate_tables(self, split: str) -> Iterator[tuple[Any, pa.Table]]:
        plan = self._plan()
        key = datasets.builder.Key
        if self.config.name == "instruct":
            tables: Iterable[pa.Table] = iter_instruct_tables(plan, num_proc=self.config.num_proc)
        else:
            tables = (t for _, _, t in iter_tables(plan, [(self.config.name, split)], num_proc=self.config.num_proc))
        for i, table in enumerate(tables):
            yield key(0, i), table
        for issue in plan.report.skipped:
            datasets.utils.logging.get_logger(__name__).warning(
                f"{issue.file} row {issue.row}: not written: {issue.reason} ({issue.column}={short_repr(issue.value)})"
            )
        plan.report.skipped.clear()


# --------------------------------------------------------------------------------------------
# Command line: mm-skin build (options declared once) / mm-skin push
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class BuildOptions:
    """Options of ``mm-skin build`` (each one is a flag of the same name)."""

    source: str | None = dataclasses.field(default=None, metadata={
        "positional": True, "help": "the release folder (or --sample)"})
    sample: bool = dataclasses.field(default=False, metadata={
        "help": "build the tiny synthetic sample release that ships with the package instead of SOURCE"})
    out: str = dataclasses.field(default="mm-skin", metadata={"help": "output folder; written atomically"})
    test_csv: str | None = dataclasses.field(
        default=None, metadata={"help": "the official VQA test CSV (default: SOURCE/Dataframe/test/vqa/MM-Skin_test.csv)"})
    instruct_json: list[str] | None = dataclasses.field(default=None, metadata={
        "metavar": "JSON",
        "help": "LLaVA-format training JSON file(s) for the `instruct` config "
                "(default: SOURCE/Dataframe/Pretrain/vqa_MM.json when present)"})
    modality_map: list[str] = dataclasses.field(default_factory=list, metadata={
        "metavar": "VALUE=MODALITY", "help": f"map a modality string of caption.csv to one of {', '.join(MODALITIES)}"})
    strict: bool = dataclasses.field(default=False, metadata={"help": "fail (exit 3) instead of leaving out bad rows"})
    overwrite: bool = dataclasses.field(default=False, metadata={
        "help": "replace an existing OUT that is empty or an earlier mm-skin build"})
    force: bool = dataclasses.field(default=False, metadata={
        "help": "with --overwrite, also replace an OUT that is not an earlier mm-skin build (everything in it is deleted)"})
    num_proc: int | None = dataclasses.field(
        default=None, metadata={"help": "threads reading and checking images (default: min(4, CPUs))"})
    max_shard_size: str = dataclasses.field(default="500MB", metadata={"help": "target Parquet shard size; MB/GB are decimal, MiB/GiB binary (as datasets reads max_shard_size)"})
    audit: bool = dataclasses.field(default=False, metadata={
        "help": "run `mm-skin audit` on the new folder before it replaces OUT and put its summary on the "
                "card (section \"Duplicates and overlap\"); --num-proc processes fingerprint the images"})
    audit_out: str | None = dataclasses.field(default=None, metadata={
        "metavar": "DIR", "help": "with --audit: folder for audit.json, audit.md and near_duplicates.png (default: OUT.audit "
                "beside OUT; never inside OUT, which is what gets pushed)"})


def run_build(options: BuildOptions) -> int:
    """``mm-skin build``: build the folder, print its path and a summary; returns the exit code."""
    if options.sample == (options.source is not None):
        print("mm-skin build: error: give the release folder SOURCE or --sample (one of them)", file=sys.stderr)
        return cli.ExitCode.BAD_INPUT
    try:
        result = build(
            str(SAMPLE_RELEASE) if options.sample else options.source, options.out, test_csv=options.test_csv, instruct_json=options.instruct_json,
            modality_map=options.modality_map, strict=options.strict, overwrite=options.overwrite, force=options.force,
            num_proc=options.num_proc, max_shard_size=options.max_shard_size, progress=True,
            audit=options.audit, audit_out=options.audit_out,
        )
    except StrictError as e:  # the message lists the rows not written, one per line
        cli.print_report(e, "mm-skin build")
        return cli.ExitCode.STRICT
    except ReleaseError as e:
        cli.print_problem(e, "mm-skin build: error")
        return cli.ExitCode.BAD_INPUT
    r = result.report
    print(f"mm-skin build: wrote {result.out} in {result.seconds:.1f}s "
          f"({r.images['written']} images, {r.images['bytes'] / 1e6:.1f} MB)", file=sys.stderr)
    cli.print_report(r.summary())  # it quotes the release (file names, notes)
    print(f"  details: {result.out / REPORT_FILE}", file=sys.stderr)
    if result.audit is not None:
        print(summary_line(result.audit, result.audit_out), file=sys.stderr)
    print(result.out)
    return cli.ExitCode.OK


@dataclasses.dataclass(kw_only=True)
class BenchmarkBuildOptions:
    """Options of ``mm-skin benchmark build`` (each one is a flag of the same name)."""

    name: str = dataclasses.field(metadata={"positional": True, "choices": sorted(BENCHMARKS),
                                            "help": "which benchmark SOURCE holds"})
    source: str = dataclasses.field(metadata={"positional": True, "help": "the publisher's download, as shipped"})
    out: str = dataclasses.field(metadata={"help": "output folder; written atomically"})
    test_file: str | None = dataclasses.field(default=None, metadata={
        "metavar": "CSV", "help": "the official or the MM-Skin authors' test label file (image, atributes, "
                                  "categories); required for hiba, bcn20000, mskcc, patch16"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the split when no --test-file is given"})
    test_fraction: float = dataclasses.field(default=0.2, metadata={"help": "share of images in the seeded test split"})
    validation_fraction: float = dataclasses.field(default=0.1, metadata={
        "help": "share of images in the seeded validation split"})
    overwrite: bool = dataclasses.field(default=False, metadata={
        "help": "replace an existing OUT that is empty or an earlier mm-skin build"})
    force: bool = dataclasses.field(default=False, metadata={
        "help": "with --overwrite, also replace an OUT that is not an earlier mm-skin build"})
    num_proc: int = dataclasses.field(default=1, metadata={"help": "threads reading and checking images"})


def run_benchmark_build(options: BenchmarkBuildOptions) -> int:
    """``mm-skin benchmark build``: print the folder and rows per config and split; returns the exit code."""
    try:
        result = build_benchmark(
            options.name, options.source, options.out, test_file=options.test_file, seed=options.seed,
            test_fraction=options.test_fraction, validation_fraction=options.validation_fraction,
            overwrite=options.overwrite, force=options.force, num_proc=options.num_proc)
    except ReleaseError as e:
        cli.print_problem(f"mm-skin benchmark build: {e}")
        return cli.ExitCode.BAD_INPUT
    print(f"mm-skin benchmark build: wrote {result.out} in {result.seconds:.1f}s", file=sys.stderr)
    cli.print_report(result.report.summary())  # it quotes the publisher's file names and cells
    print(result.out)
    return cli.ExitCode.OK


BUILD_HELP = "release -> Parquet folder + dataset card + build_report.json"
AUDIT_HELP = "find duplicate images/texts and test-vs-train overlap in a built folder or Hub dataset"
BENCHMARK_HELP = "public classification benchmarks -> Hub-ready Parquet folders"
COMMANDS = {"build": BUILD_HELP, "push": hub.DATASET_PUSH_HELP, "benchmark": BENCHMARK_HELP, "audit": AUDIT_HELP}


def make_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``mm-skin`` argument parser (sub-commands ``build``, ``push``, ``benchmark`` and ``audit``, and ``--version``).

    Only the sub-command named in ``argv`` (default ``sys.argv``) gets its options parser: ``--help``
    and ``--version`` list the commands without importing transformers.
    """
    parser = cli.make_parser(
        "mm-skin", "Build the MM-Skin dataset from the authors' release into a Hub-ready Parquet folder, and push it.",
        __version__,
    )
    if cli.chosen_command(sys.argv[1:] if argv is None else argv, COMMANDS) is None:
        cli.add_command_list(parser, COMMANDS)
        return parser
    sub = cli.add_subcommands(parser)
    cli.add_command(
        sub, "build", BuildOptions, run_build,
        help=BUILD_HELP,
        description="Build OUT from SOURCE, the MM-Skin release (caption.csv, VQA.csv, dataset/*.png at SOURCE or "
                    "SOURCE/MM-SkinQA). The official test split is SOURCE/Dataframe/test/vqa/MM-Skin_test.csv or --test-csv. "
                    "Rows that cannot be written are listed in OUT/build_report.json and summarised on stderr.",
    )
    hub.register_cli(sub)
    benchmark = sub.add_parser("benchmark", help=BENCHMARK_HELP,
                               description="Build HAM10000, ISIC 2019, DDI, Fitzpatrick17k, PAD-UFES-20, Dermnet, "
                                           "and HIBA, BCN20000, MSKCC, PATCH16 (from the authors' label files).")
    cli.add_command(
        cli.add_subcommands(benchmark), "build", BenchmarkBuildOptions, run_benchmark_build,
        help="a publisher's download -> Parquet folder + dataset card + build_report.json",
        description="Build OUT from SOURCE as the publisher ships it: " + "; ".join(
            f"{b.name}: {b.layout}" for b in BENCHMARKS.values()) + ". One config per label set (the paper's "
        "the default). Split: --test-file, the publisher's folders (Dermnet), or a seeded split keeping each "
        "lesion / patient on one side. Rows not written are listed in OUT/build_report.json.",
    )
    cli.add_command(
        sub, "audit", AuditOptions, run_audit_command,
        help=AUDIT_HELP,
        description="Exact and near-duplicate images (perceptual hashes) and texts (MinHash), within and "
                    "across splits and configs and against --against image folders, and how much of each "
                    "test split has a twin in train. Writes audit.json, audit.md and a contact sheet.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mm-skin`` console script; returns the exit code."""
    return cli.run_main(make_parser(argv), None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
