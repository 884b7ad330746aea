#!/usr/bin/python3
"""Python's zipfile as the independent reference for the model-file verifier (tests/test_model.cpp).

usage: zip_entries.py list ARCHIVE      prints one line per entry, in central-directory order:
                                        NAME METHOD COMPRESSED_SIZE SIZE CRC32(hex) HEADER_OFFSET
                                        FLAGS and a last line "testzip OK" or "testzip BAD NAME"
       zip_entries.py make ARCHIVE      writes an archive of stored and deflated entries (one
                                        written with zip64 extra fields) and lists it as above
       zip_entries.py make-stream ARCHIVE
                                        the same entries written to an unseekable stream, so
                                        each has a data descriptor (flag bit 3) after its data
                                        (with 8-byte sizes for the zip64 one), and lists it
"""
import random
import sys
import zipfile


class Unseekable:
    """A write-only file that zipfile cannot seek back in: it writes data descriptors."""

    def __init__(self, f):
        self.f = f

    def write(self, b):
        return self.f.write(b)

    def flush(self):
        self.f.flush()

    def tell(self):
        raise OSError("unseekable")

    def seekable(self):
        return False


def make(path, stream=False):
    text = b"".join(b"line %d of a deflated entry\n" % i for i in range(400))
    out = open(path, "wb")
    with out, zipfile.ZipFile(Unseekable(out) if stream else out, "w") as z:
        z.writestr(zipfile.ZipInfo("top/stored.bin"), bytes(range(256)) * 3)
        z.writestr("top/check", b"123456789")
        z.writestr("top/deflated.txt", text, compress_type=zipfile.ZIP_DEFLATED)
        # Larger than the verifier's 64 KiB chunks: many output chunks from a little input,
        # and input in several chunks.
        z.writestr("top/long.txt", text * 100, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("top/random.bin", random.Random(1).randbytes(200000),
                   compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo("top/empty"), b"")
        with z.open("top/zip64.bin", "w", force_zip64=True) as f:
            f.write(b"zip64 " * 50)


def list_entries(path):
    with zipfile.ZipFile(path) as z:
        for i in z.infolist():
            print(i.filename, i.compress_type, i.compress_size, i.file_size, "%08x" % i.CRC,
                  i.header_offset, i.flag_bits)
        bad = z.testzip()
        print("testzip OK" if bad is None else "testzip BAD " + bad)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("list", "make", "make-stream"):
        sys.exit(__doc__)
    if sys.argv[1] != "list":
        make(sys.argv[2], stream=sys.argv[1] == "make-stream")
    list_entries(sys.argv[2])
