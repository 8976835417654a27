"""Persistence for state that changes on nearly every request (Pub/Sub deliveries, jobs).

Rewriting a whole snapshot per request would make a 100,000-message drain quadratic, so
such state is kept as an atomically written snapshot (`NAME.json`: temp file, fsync,
rename) plus an append-only journal of changes since that snapshot (`NAME.journal`, one
JSON value per line, fsync'd per request). The journal's first line names the snapshot
it continues; a journal left over from an older snapshot (a crash between the two
renames of a compaction) is ignored, since the newer snapshot already holds it. A line
cut short by a crash is the last one written and is dropped: the request that wrote it
was never answered.
"""
import json
import os
import uuid


def write_atomic(path, data):
    """Replace `path` with `data` (bytes) so that a reader sees the old or the new file."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:  # make the rename itself durable
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Journal:
    def __init__(self, directory, name):
        self.snap_path = os.path.join(directory, name + ".json")
        self.log_path = os.path.join(directory, name + ".journal")
        self.fd = None
        self.log_bytes = 0
        self.snap_bytes = 0

    def load(self):
        """-> (snapshot dict or None, [journal records in order])."""
        snap = None
        if os.path.exists(self.snap_path):
            with open(self.snap_path, "rb") as f:
                raw = f.read()
            self.snap_bytes = len(raw)
            snap = json.loads(raw.decode("utf-8"))
        records = []
        if snap is not None and os.path.exists(self.log_path):
            with open(self.log_path, "rb") as f:
                lines = f.read().split(b"\n")
            try:
                header = json.loads(lines[0])
            except ValueError:
                header = None
            if isinstance(header, dict) and header.get("snapshot") == snap.get("journal"):
                for line in lines[1:]:
                    if not line.strip():
                        continue
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        break  # torn tail
        return snap, records

    def rewrite(self, snapshot):
        """Atomically replace the snapshot with `snapshot` and start an empty journal."""
        token = uuid.uuid4().hex
        data = dumps(dict(snapshot, journal=token)).encode("utf-8")
        write_atomic(self.snap_path, data)
        self.snap_bytes = len(data)
        write_atomic(self.log_path, (dumps({"snapshot": token}) + "\n").encode("utf-8"))
        self.close()
        self.fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)
        self.log_bytes = 0

    def append(self, records):
        """Append records (JSON values) durably, all in one write."""
        if not records or self.fd is None:
            return
        data = "".join(dumps(r) + "\n" for r in records).encode("utf-8")
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)
        self.log_bytes += len(data)

    def wants_compaction(self, floor=64 * 1024 * 1024):
        return self.log_bytes > max(floor, 2 * self.snap_bytes)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self):
        self.close()
        for p in (self.snap_path, self.log_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
