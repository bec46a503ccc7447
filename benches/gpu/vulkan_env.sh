# The Vulkan loader and NVIDIA's ICD for the GPU scripts beside this file (sourced from the
# repository root by run.sh and deep_mlp.sh).
#
# If the machine has no libvulkan.so.1, the Debian packages in .gl/ (libvulkan1, libegl1,
# libglvnd0, libopengl0, libgl1, libglx0, libgles2, fetched with `apt-get download`) are
# unpacked first. NVIDIA's ICD json is found in the usual places (the driver mount
# /usr/local/nvidia/share/vulkan/icd.d first) and exported as VK_DRIVER_FILES unless it is
# already set.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    if compgen -G ".gl/*.deb" >/dev/null; then
        echo "${0##*/}: no Vulkan loader; unpacking .gl/*.deb"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    else
        echo "${0##*/}: no libvulkan.so.1 and no .gl/*.deb to unpack (apt-get install libvulkan1)" >&2
        exit 1
    fi
fi
if [ -z "${VK_DRIVER_FILES:-}" ]; then
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
               /usr/share/vulkan/icd.d/nvidia_icd.json \
               /etc/vulkan/icd.d/nvidia_icd.json; do
        if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
    done
fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$egl" ]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<loader default>}"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
    echo "${0##*/}: no nvidia-smi on this machine"
fi
