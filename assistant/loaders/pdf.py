"""PDF: pypdf's text per page, its stream caps lowered to our limits, every failure a LoadError."""

from __future__ import annotations

from pathlib import Path

from assistant.loaders.base import MB, Budget, LoadedDocument, LoadError, current_limits, title_from_text, too_expanded


def load_pdf(path: Path) -> LoadedDocument:
    import pypdf
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    limits = current_limits()
    budget = Budget(limits)
    default = pypdf.Configuration()  # pypdf's own caps per stream, lowered to ours when ours are lower
    caps = {name: min(getattr(default, name), limits.expanded_bytes) for name in (
        "zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
        "brotli_maximum_output_length", "jbig2_maximum_output_length", "array_based_stream_maximum_output_length",
        "maximum_declared_stream_length")}
    try:
        with pypdf.apply_configuration(**caps):
            reader = PdfReader(path)
            note = ""
            if reader.is_encrypted:
                try:
                    unlocked = bool(reader.decrypt(""))
                except Exception:  # noqa: BLE001 - pypdf raises several kinds here
                    unlocked = False
                if not unlocked:
                    raise LoadError(
                        "encrypted PDF: it needs a password; save a decrypted copy (e.g. `qpdf --decrypt`) "
                        "and ingest that"
                    )
                note = "encrypted with an empty password: read anyway"
            pages = []
            for page in reader.pages:  # counted page by page: a text bomb stops at the limit
                budget.check_time()
                text = page.extract_text() or ""
                budget.add_text(len(text))
                pages.append(text)
            budget.check_time()
            meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except LoadError:
        raise
    except LimitReachedError as exc:
        cap = caps["zlib_maximum_output_length"]
        raise LoadError(f"a PDF stream expands to more than {cap / MB:.0f} MB: refused (pypdf's cap per stream, "
                        "lowered to ASSISTANT_MAX_EXPANDED_MB when that is lower; a compression bomb?)") from exc
    except MemoryError as exc:
        raise LoadError(too_expanded(limits, "the PDF")) from exc
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc}); re-export the PDF") from exc
    except Exception as exc:  # noqa: BLE001 - a broken PDF can raise nearly anything inside pypdf
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc}); re-export the PDF") from exc
    text = "\n\n".join(p.strip() for p in pages)
    if not text.strip():
        raise LoadError("PDF has no extractable text (scanned images?); run OCR on it first")
    return LoadedDocument(title=meta_title.strip() or title_from_text(text, path.stem), segments=[text], note=note)
