"""`flywheel data`: synthetic dated batches, and what the source holds."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from flywheel.cli import options
from flywheel.cli.render import err, out
from flywheel.stores import Stores

if TYPE_CHECKING:
    from flywheel.batches import BatchSource

# The first day written, by `generate` and `split`.
Start = Annotated[
    datetime | None,
    typer.Option(
        formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD) (default: data.generator.start_date)."
    ),
]

app = typer.Typer(
    help="Dated batches: generate synthetic ones, split a table of your own, list what is there.",
    no_args_is_help=True,
)


@app.command("generate")
def generate(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="How many daily batches to write.", min=1)] = 14,
    start: Start = None,
    next_days: Annotated[
        int | None,
        typer.Option(
            "--next",
            min=1,
            help="Write this many days after the newest batch already there (or from the start "
            "date when there is none). Overrides --days and --start.",
        ),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="stable, covariate_drift, concept_drift, label_shift, new_category, broken_*."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    out_uri: Annotated[
        str | None, typer.Option("--out", help="Directory or s3:// prefix (default: data.source).")
    ] = None,
) -> None:
    """Write realistic synthetic daily batches for the loan-default use case."""
    from rich.progress import Progress

    from flywheel import batches, synthetic
    from flywheel.storage import open_store

    settings = options.settings(ctx, *([f"data.generator.scenario={scenario}"] if scenario else []))
    if fmt not in {"parquet", "csv"}:
        raise options.UsageFailure(f"--format must be parquet or csv, not {fmt!r}")
    generator = settings.data.generator
    if out_uri:
        store = open_store(out_uri, settings.storage)
    else:
        store = options.stores(ctx, settings).source.store
    store.check(create=True)  # generating is how a data directory comes to exist
    source = batches.BatchSource(store)
    existing = source.available()
    if next_days is not None:
        first = existing[-1].day + timedelta(days=1) if existing else generator.start_date
        count = next_days
    else:
        first = start.date() if start else generator.start_date
        count = days
    with Progress(console=err, transient=True) as progress:
        bar = progress.add_task(f"generating {generator.scenario} batches", total=count)
        for day in synthetic.days(first, count):
            source.write(day, synthetic.generate_day(day, generator), fmt)
            progress.advance(bar)
    last = first + timedelta(days=count - 1)
    out.print(
        f"wrote {count} {generator.scenario} batch(es) {first}..{last}, "
        f"{generator.rows_per_day} rows each, to {store.uri}"
    )


def existing_source(stores: Stores) -> BatchSource:
    """The configured batch source, which must exist: a typo is named, never created."""
    from flywheel.storage import StoreUnavailable

    try:
        stores.source.store.check()
    except StoreUnavailable as error:
        raise options.UsageFailure(
            f"data.source: {error} (write batches with `flywheel data generate`, or fix data.source)"
        ) from None
    return stores.source


@app.command("split")
def split(
    ctx: typer.Context,
    table: Annotated[
        str,
        typer.Argument(
            help="A CSV or Parquet file, or sklearn:breast_cancer, sklearn:wine, "
            "sklearn:diabetes or sklearn:iris (scikit-learn's own tables, label `target`)."
        ),
    ],
    rows_per_day: Annotated[
        int, typer.Option(min=1, help="Rows in each daily batch (the last may have fewer).")
    ] = 100,
    start: Start = None,
    seed: Annotated[
        int, typer.Option(help="Shuffle the rows with this seed first; -1 keeps file order.")
    ] = 0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    out_uri: Annotated[
        str | None, typer.Option("--out", help="Directory or s3:// prefix (default: data.source).")
    ] = None,
) -> None:
    """Split a table of your own into dated daily batches: how to bring your own dataset.

    Each row gets a time in its day (the time column, features.time_column) unless the
    table has one; column names become identifiers (`mean radius` -> `mean_radius`).
    """
    from flywheel import batches
    from flywheel.storage import open_store

    settings = options.settings(ctx)
    if fmt not in {"parquet", "csv"}:
        raise options.UsageFailure(f"--format must be parquet or csv, not {fmt!r}")
    frame = batches.read_table(table)
    days = batches.split_days(
        frame,
        start.date() if start else settings.data.generator.start_date,
        rows_per_day,
        settings.features.time_column,
        None if seed < 0 else seed,
    )
    store = (
        open_store(out_uri, settings.storage)
        if out_uri
        else options.stores(ctx, settings).source.store
    )
    store.check(create=True)
    source = batches.BatchSource(store)
    taken = {b.day for b in source.available()} & {day for day, _ in days}
    if taken:
        raise options.UsageFailure(
            f"{store.uri} already has batches for {min(taken)}..{max(taken)}: batches are "
            "never rewritten (choose --start, or another --out)"
        )
    for day, part in days:
        source.write(day, part, fmt)
    out.print(
        f"wrote {len(days)} batch(es) {days[0][0]}..{days[-1][0]} of {len(frame)} rows "
        f"({', '.join(map(str, frame.columns[:4]))}{', ...' if len(frame.columns) > 4 else ''}) "
        f"to {store.uri}"
    )


@app.command("list")
def list_batches(ctx: typer.Context) -> None:
    """List the batches in the configured source."""
    source = existing_source(options.stores(ctx, options.settings(ctx)))
    store = source.store
    found = source.available()
    for batch in found:
        out.print(f"{batch.day}  {store.location(batch.key)}")
    out.print(f"{len(found)} batch(es) in {store.uri}")
