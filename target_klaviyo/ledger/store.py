"""The ledger's database: its tables, whose it is, each list's lock, and one transaction per job.

The same SQLAlchemy Core code serves SQLite (``ledger_path``, the default) and
PostgreSQL (``ledger_url``), so the two give the same results. The tables are named
``target_klaviyo_ledger_*``, so that the ledger can live in a database that holds
other things (Meltano's system database, say)::

    target_klaviyo_ledger_meta      name, value: the format, the account URL
    target_klaviyo_ledger_lists     list_id, list_created: the list as Klaviyo created it;
                                    members_read_through: who joined it before then was read
    target_klaviyo_ledger_profiles  list_id, person, digest, confirmed_at, stream, profile_id
    target_klaviyo_ledger_identifiers  person, attribute, identifier, claimed_at: each phone
                                    number and external id the target gave a person, account-wide

A ledger serves one Klaviyo account URL. A list's rows are bound to the moment
Klaviyo says the list was created: a list deleted and created again under the same
id (or a new sandbox) starts with no rows, since nobody is in it yet.

Every failure is a :class:`~target_klaviyo.errors.LedgerError` of one sentence that
names the setting; a ``ledger_url`` is never shown, as it may hold a password.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    inspect,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from target_klaviyo import __version__
from target_klaviyo.errors import LedgerError
from target_klaviyo.files import make_private_folders, try_lock
from target_klaviyo.settings.settings import LEDGER_LOCKS, LedgerPlace

logger = logging.getLogger("target_klaviyo.ledger")

FORMAT = 1  # the tables' layout; a ledger of a higher format comes from a newer target-klaviyo
SQLITE_BUSY_SECONDS = 30  # two runs on different lists share the file: one waits for the other's write
PRIVATE_FILE = 0o600
FORGET_CHUNK = 500  # people per DELETE: under SQLite's 999 bound parameters of old versions

TABLES = MetaData()
META = Table(
    "target_klaviyo_ledger_meta",
    TABLES,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
LISTS = Table(
    "target_klaviyo_ledger_lists",
    TABLES,
    Column("list_id", String(64), primary_key=True),
    Column("list_created", String(64), nullable=False),
    # Unix seconds: a mirror run (mirror_scope synced) read every member who joined before then, and
    # the ledger holds their profile ids; the next reads only who joined since (docs/ledger.md).
    Column("members_read_through", BigInteger, nullable=True),
)
PROFILES = Table(
    "target_klaviyo_ledger_profiles",
    TABLES,
    Column("list_id", String(64), primary_key=True),
    Column("person", LargeBinary(16), primary_key=True),
    Column("digest", LargeBinary(16), nullable=False),
    Column("confirmed_at", BigInteger, nullable=False),
    Column("stream", Text, nullable=False),
    Column("profile_id", String(64), nullable=True),  # Klaviyo's, once a mirror run read the member
    # Clustered by (list_id, person): a list's rows are read in one sequential pass at the start
    # of every run, 3x faster than through a rowid table's separate index, in a third less space.
    sqlite_with_rowid=False,
)
IDENTIFIERS = Table(
    "target_klaviyo_ledger_identifiers",
    TABLES,
    Column("person", LargeBinary(16), primary_key=True),
    Column("attribute", String(16), primary_key=True),  # phone_number or external_id
    Column("identifier", LargeBinary(16), primary_key=True),
    Column("claimed_at", BigInteger, nullable=False),  # when a job posted last gave it
    sqlite_with_rowid=False,
)
# A person keeps every value a job of theirs gave until a confirmed job gives another and a day has
# passed since the old one was last given: any job that gave it has long finished at Klaviyo by then
# (a killed run's, one whose consent was superseded, one that failed without naming anyone), so
# Klaviyo cannot still be giving it to them after the new one.
STALE_AFTER_SECONDS = 86_400
IDENTIFIERS_LOCK = "\0identifiers"  # the account-wide lock of runs that send phone numbers or external ids
IDENTIFIERS_WAIT_SECONDS = 1800  # longer than a nightly run of millions takes; then one sentence
IDENTIFIERS_POLL_SECONDS = 0.5
# Ledgers written before the identifiers table existed lack it: it is added, not "damaged".
REQUIRED = frozenset({META.name, LISTS.name, PROFILES.name})
# Columns added since, to ledgers written before them (mirror_scope synced): nothing to forget.
ADDED_COLUMNS = ((PROFILES, PROFILES.c.profile_id), (LISTS, LISTS.c.members_read_through))
READ_CHUNK = 20_000  # rows a fetch: a million people are read at the start of every run
Row = tuple[bytes, bytes, int, str]  # person, digest, confirmed_at (Unix seconds), stream
Claim = tuple[bytes, str, bytes]  # person, attribute (phone_number, external_id), identifier


def _cause(error: BaseException) -> str:
    """The database's own words, first line only (never a statement's parameters)."""
    original = getattr(error, "orig", None) or error
    words = str(original).strip().splitlines()
    return (words[0] if words else type(original).__name__)[:200]


class LedgerStore:
    """One ledger database, opened for one run; ``read_only`` (a dry run) creates and writes nothing."""

    def __init__(self, place: LedgerPlace, account_url: str, *, read_only: bool) -> None:
        self._place = place
        self._where = f"ledger_path {str(place.path)!r}" if place.setting == "ledger_path" else "ledger_url"
        self._read_only = read_only
        self._lock_files: list[IO[bytes]] = []
        self._lock_connection: Connection | None = None
        self.empty = False  # a dry run with no ledger yet: every profile is new
        # A ledger older than the identifiers table (created now, or absent in a dry run): it holds none.
        self.identifiers_missing = False
        self.ids_missing = False  # a dry run on a ledger without the profile id columns: none known
        if read_only and place.path is not None and not place.path.exists():
            self.empty = True
            self._engine: Engine | None = None
            return
        self._engine = self._connect()
        try:
            self._check(account_url)
        except LedgerError:
            self.close()
            raise

    # Opening

    def _connect(self) -> Engine:
        place = self._place
        if place.path is not None and not self._read_only:
            try:
                make_private_folders(place.path.parent)
                os.close(os.open(place.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE))
            except OSError as error:
                raise LedgerError(
                    f"The ledger ({self._where}) cannot be created: {error.strerror or type(error).__name__}."
                ) from None
        try:
            if place.path is not None:
                engine = create_engine(place.url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(place.url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError) as error:
            extra = (
                " (install target-klaviyo[postgres] for PostgreSQL)" if isinstance(error, ImportError) else ""
            )
            raise LedgerError(
                f"The ledger ({self._where}) cannot be opened{extra}: {_cause(error)}."
            ) from None
        return engine

    def _check(self, account_url: str) -> None:
        """The ledger is this target's, of a format it reads, and this account's; a new one is created."""
        try:
            with self._begin() as connection:
                names = set(inspect(connection).get_table_names())
                ours = {table.name for table in TABLES.sorted_tables}
                if not names & ours:
                    if self._read_only:
                        self.empty = True
                        return
                    self._create(connection, account_url)
                    return
                if not names >= REQUIRED:
                    raise self.damaged("some of its tables are missing")
                if IDENTIFIERS.name not in names:
                    if self._read_only:
                        self.identifiers_missing = True
                    else:
                        self._add_identifiers(connection)
                self._add_columns(connection)
                rows = connection.execute(select(META.c.name, META.c.value)).all()
                meta = {str(row[0]): str(row[1]) for row in rows}
        except SQLAlchemyError as error:
            raise LedgerError(
                f"The ledger ({self._where}) cannot be read: {_cause(error)}; move it away to start a new "
                "ledger (the next run then sends everyone once), or set use_ledger to false."
            ) from None
        try:
            found = int(meta.get("format", ""))
        except ValueError:
            raise self.damaged("it says no format") from None
        if found > FORMAT:
            raise LedgerError(
                f"The ledger ({self._where}) was written by a newer target-klaviyo ({meta.get('created_by', '?')}, "
                f"format {found}); this one reads format {FORMAT}: upgrade target-klaviyo, or give it another ledger."
            )
        if meta.get("account_url") != account_url:
            raise LedgerError(
                f"The ledger ({self._where}) belongs to another Klaviyo account URL, not api_url {account_url}: "
                "give each account its own ledger_path or ledger_url."
            )

    def _add_identifiers(self, connection: Connection) -> None:
        """A ledger from before the identifiers table: unchanged profiles are not checked for a value
        another person holds (ExportRun.add), which needs the table to hold everyone's. So the ledger
        forgets its people, in the same transaction: each is sent, and recorded, once more."""
        IDENTIFIERS.create(connection)
        forgotten = connection.execute(delete(PROFILES)).rowcount
        logger.warning(
            "The ledger (%s) was written by an earlier target-klaviyo, which kept no phone numbers or "
            "external ids: it forgot its %s people, so each is sent once more to record them.",
            self._where,
            f"{forgotten:,}",
        )

    def _add_columns(self, connection: Connection) -> None:
        """A ledger from before the profile ids: the columns are added (empty, so every id is
        unknown until a mirror run reads the list); a dry run reads it as having none."""
        inspector = inspect(connection)
        for table, column in ADDED_COLUMNS:
            if column.name in {found["name"] for found in inspector.get_columns(table.name)}:
                continue
            if self._read_only:
                self.ids_missing = True
                continue
            kind = column.type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))

    def _create(self, connection: Connection, account_url: str) -> None:
        try:
            TABLES.create_all(connection)
            connection.execute(
                META.insert(),
                [
                    {"name": "format", "value": str(FORMAT)},
                    {"name": "account_url", "value": account_url},
                    {"name": "created_by", "value": f"target-klaviyo {__version__}"},
                ],
            )
        except SQLAlchemyError as error:
            raise LedgerError(
                f"The ledger's tables cannot be created ({self._where}): {_cause(error)}; give the database "
                "role the right to create tables, or set use_ledger to false."
            ) from None
        logger.info("Created a new ledger (%s).", self._where)

    def damaged(self, what: str) -> LedgerError:
        return LedgerError(
            f"The ledger ({self._where}) is not a target-klaviyo ledger, or is damaged ({what}); move it "
            "away to start a new ledger, or set use_ledger to false."
        )

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        assert self._engine is not None
        with self._engine.begin() as connection:
            yield connection

    # Locks: one run at a time per list

    def lock(self, list_id: str) -> None:
        """Hold the list's lock until :meth:`close`; a list another run holds is one sentence, at once.

        PostgreSQL: a session advisory lock, on a connection kept for the run. SQLite: a file lock
        beside the database. Either ends with the process, however it ends.
        """
        if not self._lock_one(list_id):
            raise LedgerError(
                f"List {list_id}'s ledger is in use by another run of target-klaviyo ({self._where}); "
                "this run stops before sending that list anything: run them one after another."
            )

    def lock_identifiers(self) -> None:
        """Hold the account's identifiers lock until :meth:`close`, for a run that sends phone numbers or
        external ids: it reads who holds each at its start, which another such run would change.

        Such runs (two loaders of one Meltano project, say) go one after another: this one waits,
        holding no list's lock yet, up to IDENTIFIERS_WAIT_SECONDS, then stops in one sentence.
        """
        deadline = time.monotonic() + IDENTIFIERS_WAIT_SECONDS
        if self._lock_one(IDENTIFIERS_LOCK):
            return
        logger.warning(
            "Another run of target-klaviyo that sends phone numbers or external ids uses this ledger (%s): "
            "Klaviyo finds profiles by them across all lists, so this run waits for it to end.",
            self._where,
        )
        while time.monotonic() < deadline:
            time.sleep(IDENTIFIERS_POLL_SECONDS)
            if self._lock_one(IDENTIFIERS_LOCK):
                return
        raise LedgerError(
            f"Another run of target-klaviyo that sends phone numbers or external ids held this ledger "
            f"({self._where}) for {IDENTIFIERS_WAIT_SECONDS // 60} minutes; this run stops before sending "
            "anything: run them one after another."
        )

    def _lock_one(self, list_id: str) -> bool:
        number = int.from_bytes(hashlib.blake2b(list_id.encode(), digest_size=8).digest(), "big", signed=True)
        if self._place.path is None:
            try:
                if self._lock_connection is None:
                    assert self._engine is not None
                    self._lock_connection = self._engine.connect()
                taken = self._lock_connection.execute(
                    text("SELECT pg_try_advisory_lock(:number)"), {"number": number}
                ).scalar()
                self._lock_connection.commit()
            except SQLAlchemyError as error:
                raise LedgerError(f"The ledger ({self._where}) cannot be locked: {_cause(error)}.") from None
            return bool(taken)
        folder = Path(f"{self._place.path}{LEDGER_LOCKS}")
        try:
            make_private_folders(folder)
            handle = try_lock(folder / f"{number & 0xFFFFFFFFFFFF:012x}")
        except OSError as error:
            raise LedgerError(
                f"The ledger ({self._where}) cannot be locked: {error.strerror or type(error).__name__}."
            ) from None
        if handle is None:
            return False
        self._lock_files.append(handle)
        return True

    # Lists and rows

    def bind_list(self, list_id: str, created: str) -> bool:
        """Bind the list's rows to the list Klaviyo has now; True if they were of another (and are gone)."""
        try:
            with self._begin() as connection:
                known = connection.execute(
                    select(LISTS.c.list_created).where(LISTS.c.list_id == list_id)
                ).scalar()
                if known == created:
                    return False
                connection.execute(delete(PROFILES).where(PROFILES.c.list_id == list_id))
                connection.execute(delete(LISTS).where(LISTS.c.list_id == list_id))
                connection.execute(LISTS.insert(), {"list_id": list_id, "list_created": created})
                return known is not None
        except SQLAlchemyError as error:
            raise self._failed("written", error) from None

    def rows(self, list_id: str) -> Iterator[list[tuple[bytes, bytes, int]]]:
        """Every person the ledger holds for the list, in chunks of (person, digest, confirmed_at)."""
        if self.empty:
            return
        yield from self._read(
            select(PROFILES.c.person, PROFILES.c.digest, PROFILES.c.confirmed_at).where(
                PROFILES.c.list_id == list_id
            )
        )

    def mirror_rows(self, list_id: str) -> Iterator[list[tuple[bytes, str, str | None, int]]]:
        """Every person the ledger holds for the list, in chunks of (person, stream, profile_id,
        confirmed_at)."""
        if self.empty:
            return
        profile_id = null().label("profile_id") if self.ids_missing else PROFILES.c.profile_id
        yield from self._read(
            select(PROFILES.c.person, PROFILES.c.stream, profile_id, PROFILES.c.confirmed_at).where(
                PROFILES.c.list_id == list_id
            )
        )

    def read_through(self, list_id: str) -> int | None:
        """Until when the list's members were read and their ids recorded (None: never, read it whole)."""
        if self.empty or self.ids_missing:
            return None
        query = select(LISTS.c.members_read_through).where(LISTS.c.list_id == list_id)
        try:
            with self._begin() as connection:
                found = connection.execute(query).scalar()
        except SQLAlchemyError as error:
            raise self._failed("read", error) from None
        if found is None:
            return None
        try:
            through = int(found)
        except (TypeError, ValueError, OverflowError):
            raise self.damaged(f"list {list_id}'s members_read_through is not a time") from None
        # A time after now (a clock that was wrong, or a damaged value): the list is read whole again.
        return through if 0 <= through <= time.time() else None

    def learn(self, list_id: str, ids: list[tuple[bytes, str, int]], through: int | None) -> None:
        """Record the profile ids a mirror run read for people the ledger holds, with when Klaviyo
        last changed each profile, and until when the list's members were read; in one transaction."""
        assert not self._read_only
        # An id once learned is never replaced, and only a profile last changed before Klaviyo last
        # confirmed the person is theirs: one created or changed since (a signup with the address, or
        # another profile given it, after the imported profile's email was changed in Klaviyo) is not.
        statement = (
            update(PROFILES)
            .where(
                PROFILES.c.list_id == bindparam("b_list"),
                PROFILES.c.person == bindparam("b_person"),
                PROFILES.c.profile_id.is_(None),
                PROFILES.c.confirmed_at >= bindparam("b_created"),
            )
            .values(profile_id=bindparam("b_id"))
        )
        try:
            with self._begin() as connection:
                if ids:
                    connection.execute(
                        statement,
                        [{"b_list": list_id, "b_person": p, "b_id": i, "b_created": c} for p, i, c in ids],
                    )
                if through is not None:
                    connection.execute(
                        update(LISTS).where(LISTS.c.list_id == list_id).values(members_read_through=through)
                    )
        except SQLAlchemyError as error:
            raise self._failed("written", error) from None

    def identifiers(self) -> Iterator[list[tuple[bytes, bytes]]]:
        """Every phone number and external id the target gave someone, in chunks of (identifier, person)."""
        if self.empty or self.identifiers_missing:
            return
        yield from self._read(select(IDENTIFIERS.c.identifier, IDENTIFIERS.c.person))

    def _read(self, query: Any) -> Iterator[list[Any]]:
        """The query's rows in chunks, read with the driver's own cursor (server-side on PostgreSQL,
        so memory stays flat): SQLAlchemy's row objects cost as much again as the read itself, for
        every person of every list at the start of every run (benchmarks/results.md, the ledger's profile).
        """
        errors: tuple[type[BaseException], ...] = (SQLAlchemyError, *self._driver_errors())
        try:
            with self._begin() as connection:
                compiled = query.compile(dialect=connection.dialect)
                params = compiled.construct_params()
                arguments: Any = (
                    tuple(params[name] for name in compiled.positiontup or ())
                    if compiled.positional
                    else params
                )
                driver = connection.connection.driver_connection
                assert driver is not None
                cursor = (
                    driver.cursor(name="target_klaviyo_ledger_rows")
                    if connection.dialect.name == "postgresql"
                    else driver.cursor()
                )
                try:
                    cursor.execute(str(compiled), arguments)
                    while chunk := cursor.fetchmany(READ_CHUNK):
                        yield chunk
                finally:
                    cursor.close()
        except errors as error:
            raise self._failed("read", error) from None

    def count(self, list_id: str) -> int:
        """How many people the ledger holds for the list (to size the table they are read into)."""
        if self.empty:
            return 0
        query = select(func.count()).select_from(PROFILES).where(PROFILES.c.list_id == list_id)
        try:
            with self._begin() as connection:
                return int(connection.execute(query).scalar() or 0)
        except SQLAlchemyError as error:
            raise self._failed("read", error) from None

    def _write_errors(self) -> tuple[type[BaseException], ...]:
        """What a write can raise: SQLAlchemy's errors, and the driver's own from :meth:`_write`."""
        return (SQLAlchemyError, *self._driver_errors())

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        """The database driver's own errors, which its cursor raises without SQLAlchemy's wrapping."""
        assert self._engine is not None
        error = getattr(self._engine.dialect.loaded_dbapi, "Error", None)
        return (error,) if isinstance(error, type) and issubclass(error, BaseException) else ()

    def forget(self, list_id: str, persons: list[bytes]) -> None:
        """Drop these people of the list, in one transaction (a mirror plan removes them)."""
        if not persons:
            return
        assert not self._read_only
        try:
            with self._begin() as connection:
                for start in range(0, len(persons), FORGET_CHUNK):
                    chunk = persons[start : start + FORGET_CHUNK]
                    connection.execute(
                        delete(PROFILES).where(PROFILES.c.list_id == list_id, PROFILES.c.person.in_(chunk))
                    )
        except SQLAlchemyError as error:
            raise self._failed("written", error) from None

    def confirm(self, list_id: str, rows: list[Row], claims: list[Claim], claimed_at: int) -> None:
        """Record what Klaviyo confirmed of one job, in one transaction: all of it, or (killed) none.

        ``claims`` are the values Klaviyo now holds for those people: their other values of the same
        attribute are dropped once stale (see STALE_AFTER_SECONDS), counted from ``claimed_at``, when
        :meth:`claim` recorded the job's claims before it was posted: so they are never stale
        themselves, and are not written again (writing them twice was a third of what the ledger
        cost a cold run).
        """
        if not rows and not claims:
            return
        assert self._engine is not None
        assert not self._read_only
        insert = self._insert(PROFILES)
        upsert = insert.on_conflict_do_update(
            index_elements=[PROFILES.c.list_id, PROFILES.c.person],
            set_={
                "digest": insert.excluded.digest,
                "confirmed_at": insert.excluded.confirmed_at,
                "stream": insert.excluded.stream,
            },
        )
        values: list[dict[str, Any]] = [
            {"list_id": list_id, "person": person, "digest": digest, "confirmed_at": at, "stream": stream}
            for person, digest, at, stream in rows
        ]
        try:
            with self._begin() as connection:
                self._write(connection, upsert, values)
                for attribute in {attribute for _, attribute, _ in claims}:
                    persons = [person for person, named, _ in claims if named == attribute]
                    for start in range(0, len(persons), FORGET_CHUNK):
                        connection.execute(
                            delete(IDENTIFIERS).where(
                                IDENTIFIERS.c.attribute == attribute,
                                IDENTIFIERS.c.person.in_(persons[start : start + FORGET_CHUNK]),
                                IDENTIFIERS.c.claimed_at < claimed_at - STALE_AFTER_SECONDS,
                            )
                        )
        except self._write_errors() as error:
            raise self._failed("written", error) from None

    def claim(self, claims: list[Claim]) -> int:
        """A job about to be posted gives these values to these people: recorded before the POST, as
        Klaviyo may apply the job whatever becomes of the run, beside any they hold already.
        Returns the time recorded, for :meth:`confirm`."""
        now = int(time.time())
        if not claims:
            return now
        assert not self._read_only
        insert = self._insert(IDENTIFIERS)
        statement = insert.on_conflict_do_update(
            index_elements=[IDENTIFIERS.c.person, IDENTIFIERS.c.attribute, IDENTIFIERS.c.identifier],
            set_={"claimed_at": insert.excluded.claimed_at},
        )
        rows = [
            {"person": person, "attribute": attribute, "identifier": identifier, "claimed_at": now}
            for person, attribute, identifier in claims
        ]
        try:
            with self._begin() as connection:
                self._write(connection, statement, rows)
        except self._write_errors() as error:
            raise self._failed("written", error) from None
        return now

    @staticmethod
    def _write(connection: Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
        """Write rows with the driver's own ``executemany``, in the connection's transaction.

        Through ``Connection.execute`` SQLAlchemy processes every value of every row in Python
        first, which cost more than the writes themselves: each profile's claims as its job was
        posted and its row when Klaviyo confirmed it (with the claims then written a second time)
        took 17 s of CPU for 200,000 profiles, half the run (benchmarks/results.md, 2026-12-08).
        The values are bytes, ints and str, which both drivers take as they are.
        """
        if not rows:
            return
        compiled = statement.compile(dialect=connection.dialect, column_keys=list(rows[0]))
        names = compiled.positiontup
        arguments: list[Any] = (
            [tuple(row[name] for name in names) for row in rows] if compiled.positional and names else rows
        )
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            cursor.executemany(str(compiled), arguments)
        finally:
            cursor.close()

    def _insert(self, table: Table) -> Any:
        assert self._engine is not None
        return (postgresql if self._engine.dialect.name == "postgresql" else sqlite).insert(table)

    def _failed(self, what: str, error: BaseException) -> LedgerError:
        return LedgerError(f"The ledger ({self._where}) cannot be {what}: {_cause(error)}.")

    def close(self) -> None:
        """Release the locks and the connections."""
        for handle in self._lock_files:
            handle.close()
        self._lock_files = []
        if self._lock_connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._lock_connection.close()
            self._lock_connection = None
        if self._engine is not None:
            self._engine.dispose()


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    """WAL: a reader (a dry run) never waits for a writer, and a killed run leaves the last
    committed job. ``synchronous NORMAL`` keeps each commit through a crash of the process."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
