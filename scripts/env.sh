# Sourced by the other scripts: makes libtorch 2.13.0 (the version tch 0.26 expects) available
# and exports what the build needs. The install lives in a cache outside the checkout, is reused
# when present, and is only marked complete once pip has finished.
#
#   DONNA_TORCH=cpu  (default) CPU-only libtorch, ~1.2 GB
#   DONNA_TORCH=cuda full PyPI torch with CUDA 13 libraries, ~4.7 GB, for GPU machines
#   DONNA_CACHE=DIR  where to keep it (default ~/.cache/donna)

donna_cache="${DONNA_CACHE:-$HOME/.cache/donna}"
donna_torch="${DONNA_TORCH:-cpu}"
donna_libtorch_root="$donna_cache/libtorch-2.13.0-$donna_torch"

if [ ! -f "$donna_libtorch_root/.complete" ]; then
    echo "donna: installing libtorch 2.13.0 ($donna_torch) from PyPI into $donna_libtorch_root" >&2
    donna_python="$(command -v python3 || command -v python)" || {
        echo "donna: python3 with pip is needed to install libtorch" >&2
        return 1 2>/dev/null || exit 1
    }
    donna_tmp="$donna_libtorch_root.partial.$$"
    rm -rf "$donna_tmp"
    case "$donna_torch" in
        cpu)
            # libtorch_cpu needs exactly these two CUDA runtime libraries, not the rest of CUDA.
            "$donna_python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$donna_tmp" \
                torch==2.13.0 'nvidia-cuda-runtime==13.0.96.*' 'nvidia-cuda-cupti==13.0.85.*' ;;
        cuda)
            "$donna_python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$donna_tmp" torch==2.13.0 ;;
        *)
            echo "donna: DONNA_TORCH must be cpu or cuda, not $donna_torch" >&2
            return 1 2>/dev/null || exit 1 ;;
    esac || { rm -rf "$donna_tmp"; echo "donna: libtorch install failed" >&2; return 1 2>/dev/null || exit 1; }
    touch "$donna_tmp/.complete"
    rm -rf "$donna_libtorch_root"
    mv "$donna_tmp" "$donna_libtorch_root"
fi

# torch-sys reads these; the build scripts turn the library path into an rpath so binaries
# run without LD_LIBRARY_PATH.
export LIBTORCH="$donna_libtorch_root/torch"
export LIBTORCH_CXX11_ABI=1
unset LIBTORCH_USE_PYTORCH
