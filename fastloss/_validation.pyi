# fastloss._validation holds only C-level (cdef) argument checks shared by the loss modules;
# it exposes nothing to Python.
