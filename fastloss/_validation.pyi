# Type stubs for the compiled module fastloss._validation (fastloss/_validation.pyx): it
# holds only C-level (cdef) argument checks shared by the loss modules, exported to them
# through its .pxd, and exposes no function to Python. Checked by .ci/stubs (mypy.stubtest).
