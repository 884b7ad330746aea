#!/usr/bin/python3
"""Python's zipfile as the independent reference for the model-file verifier (tests/test_model.cpp).

usage: zip_entries.py list ARCHIVE      prints one line per entry, in central-directory order:
                                        NAME METHOD COMPRESSED_SIZE SIZE CRC32(hex) HEADER_OFFSET
                                        and a last line "testzip OK" or "testzip BAD NAME"
       zip_entries.py make ARCHIVE      writes an archive of stored and deflated entries (one
                                        written with zip64 extra fields) and lists it as above
"""
import random
import sys
import zipfile


def make(path):
    text = b"".join(b"line %d of a deflated entry\n" % i for i in range(400))
    with zipfile.ZipFile(path, "w") as z:
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
                  i.header_offset)
        bad = z.testzip()
        print("testzip OK" if bad is None else "testzip BAD " + bad)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("list", "make"):
        sys.exit(__doc__)
    if sys.argv[1] == "make":
        make(sys.argv[2])
    list_entries(sys.argv[2])
