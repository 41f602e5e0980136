"""Uploading a checkpoint folder (model, onnx/, report, plots, card) to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, constants

from .card import is_repo_id, repo_id_problem


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
) -> str:
    """Upload a checkpoint folder (model, onnx/, report, plots, card) to a Hub model repo.

    Creates the repo (and the `revision` branch) when missing. With `token=None`, huggingface_hub
    finds the token (`HF_TOKEN`, then `hf auth login`'s).

    Args:
        folder (`str` or `Path`): The folder to upload, as written by the runner.
        repo_id (`str`): `namespace/name`, e.g. `your-name/minilm-rotten-tomatoes-int8`.
        private (`bool`): Create the repo private (an existing repo keeps its visibility).
        token (`str`, *optional*): A Hub token with write access.
        commit_message (`str`, *optional*): Defaults to "Upload <folder name> with hf_efficient".
        revision (`str`, *optional*): Branch to commit to; the default branch when None.

    Returns:
        `str`: The URL of the commit.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"push_to_hub: no folder {folder}; run the recipe first, it writes the folder.")
    if not ((folder / "config.json").exists() or (folder / "README.md").exists()):
        raise ValueError(f"push_to_hub: {folder} holds no config.json nor README.md; is it a checkpoint folder?")
    if not is_repo_id(repo_id):
        raise ValueError(f"push_to_hub(repo_id={repo_id!r}): {repo_id_problem(repo_id)}")
    if constants.HF_HUB_OFFLINE:  # read per call: the environment at import, or as a test patched it
        raise OSError(
            "push_to_hub: HF_HUB_OFFLINE=1 is set, which keeps huggingface_hub off the network; unset it to upload."
        )
    api = HfApi()  # built per call, so that a patched `huggingface_hub.constants.ENDPOINT` applies
    try:
        api.create_repo(repo_id, private=private, token=token, exist_ok=True, repo_type="model")
        if revision is not None:
            api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            token=token,
            revision=revision,
            commit_message=commit_message or f"Upload {folder.name} with hf_efficient",
        )
    except Exception as error:
        raise _hub_error(error, api.endpoint, repo_id) from error
    return info.commit_url


# The transport errors of requests (huggingface_hub < 1) and httpx (>= 1) by class name: neither is a
# dependency to import here, and httpx's are no OSError.
_UNREACHABLE = {"ConnectionError", "ConnectError", "ConnectTimeout", "Timeout", "TimeoutException", "NetworkError"}


def _hub_error(error: Exception, endpoint: str, repo_id: str) -> Exception:
    """One line for the Hub failures a user can fix (no network, a token without write access); other
    errors as they are."""
    if _UNREACHABLE & {cls.__name__ for cls in type(error).__mro__}:
        return OSError(
            f"push_to_hub: cannot reach {endpoint} ({type(error).__name__}); check the network connection "
            "(or HF_ENDPOINT), then push again."
        )
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in (401, 403):
        return PermissionError(
            f"push_to_hub(repo_id={repo_id!r}): the Hub refused the token (HTTP {status}); log in with "
            "`hf auth login` or set HF_TOKEN to a token with write access to that namespace."
        )
    return error
