"""Errors raised by hf_vocabswap.

Every error derives from :class:`VocabSwapError`, and also from the built-in exception a
caller would naturally catch (``ValueError``, ``KeyError``, ``FileExistsError`` ...), so
``except ValueError`` keeps working for code that does not know this package.
Messages name the offending input and say how to fix it.
"""

from __future__ import annotations


class VocabSwapError(Exception):
    """Base class of every error raised on purpose by hf_vocabswap."""


class UnknownMethodError(VocabSwapError, KeyError):
    """The requested initialization method is not registered."""

    def __init__(self, name: str, available: list[str]):
        self.name = name
        self.available = sorted(available)
        super().__init__(
            f"Unknown method {name!r}. Registered methods: {', '.join(self.available)}. "
            "Pick one of them (hf-vocabswap methods lists them with their options)."
        )

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class MethodOptionError(VocabSwapError, TypeError):
    """An option was given that the chosen method does not have, or has the wrong type."""


class CorpusError(VocabSwapError, ValueError):
    """The corpus is missing, empty, unreadable or in the wrong encoding."""


class TokenizerError(VocabSwapError, ValueError):
    """A tokenizer cannot be used as given (missing special token, unsupported model ...)."""


class MissingSpecialTokenError(TokenizerError):
    """The target tokenizer lacks a special token for a role the model uses."""

    def __init__(self, role: str, reason: str):
        self.role = role
        super().__init__(
            f"The target tokenizer has no {role} token, but {reason}. Add one, e.g. "
            f"`tokenizer.add_special_tokens({{'{role}_token': '<{role}>'}})`, or train the "
            "target tokenizer with `hf-vocabswap train-tokenizer`, which keeps the source's "
            "special tokens."
        )


class ModelError(VocabSwapError, ValueError):
    """The model cannot be transplanted as given (no input embeddings, ...)."""


class MismatchError(VocabSwapError, ValueError):
    """Two inputs that must belong together do not (tokenizer vs model, file vs tokenizer)."""


class NoOverlapError(VocabSwapError, ValueError):
    """The source and target vocabularies share no token, so copying methods have no anchor."""


class OutputExistsError(VocabSwapError, FileExistsError):
    """The output folder exists and may not be replaced (not asked, in use, or not an output)."""

    def __init__(self, path, reason: str | None = None):
        self.path = str(path)
        if reason is None:
            message = (f"Output folder {self.path!r} already exists. Choose another folder or pass "
                       "overwrite=True (CLI: --overwrite) to replace it.")
        else:
            message = f"Output folder {self.path!r} cannot be written: {reason}. Choose another folder."
        super().__init__(message)

    def __str__(self) -> str:  # FileExistsError would otherwise format (errno, strerror)
        return self.args[0]


class OutputError(VocabSwapError, OSError):
    """An output location cannot be written: no permission, a full disk, a read-only file system."""

    def __str__(self) -> str:
        return self.args[0]


class OutputPathError(OutputError):
    """An output location that cannot be an output folder: a file, or the current folder."""


class PathNotFoundError(VocabSwapError, FileNotFoundError):
    """A path given as a model, tokenizer, corpus or folder does not exist (or is the wrong kind of path).

    Attributes:
        path: the path as given.
    """

    def __init__(self, message: str, *, path=None):
        self.path = None if path is None else str(path)
        super().__init__(message)

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return self.args[0]


class OptionValueError(VocabSwapError, ValueError):
    """An option outside its range (a batch size of 0, a negative step count): the message names the
    option, the value given and the values it takes."""


class CardError(VocabSwapError, ValueError):
    """A model-card field is invalid: a language that is not an ISO 639 code, an evaluation without a value."""


class ResourceError(VocabSwapError, FileNotFoundError):
    """A resource a method needs (fastText model, dictionary, helper model) is missing."""


class HubError(VocabSwapError, OSError):
    """Talking to the Hugging Face Hub failed: not logged in, no write access, repo missing.

    Attributes:
        repo_id: the repository concerned, when there is one.
        status_code: the HTTP status the Hub answered, when there was an answer.
    """

    def __init__(self, message: str, *, repo_id: str | None = None, status_code: int | None = None):
        self.repo_id = repo_id
        self.status_code = status_code
        super().__init__(message)

    def __str__(self) -> str:  # OSError would otherwise format (errno, strerror)
        return self.args[0]


class NotLoggedInError(HubError):
    """No Hub token anywhere: not given, no ``HF_TOKEN``, no stored login (a usage error: log in first)."""


class NotAnOutputFolderError(VocabSwapError, FileNotFoundError):
    """A folder is not a complete hf_vocabswap output (no vocabswap.json, missing weights ...)."""

    def __init__(self, path, missing: list[str], reason: str = ""):
        self.path = str(path)
        self.missing = list(missing)
        super().__init__(
            f"{self.path!r} is not a complete hf_vocabswap output folder: "
            f"{reason or 'missing ' + ', '.join(self.missing)}. Pass the folder written by "
            "`result.save_pretrained(...)` or `hf-vocabswap transplant --out ...`, and run it again "
            "if it was interrupted."
        )

    def __str__(self) -> str:
        return self.args[0]
