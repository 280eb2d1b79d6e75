"""The MicroPython-portable core of synthseal.

Everything here runs unchanged on CPython and on MicroPython (camera microcontrollers):
plain functions and small classes over bytes and ints, imports limited to `hashlib`,
`struct`, `binascii` and `json`. The host imports these modules too, so the device and
the host share one definition of the frame, the message, the log record, the AIGC
label and the labeling policy. `tests/test_core_portable.py` compiles every module
with mpy-cross and runs them under real MicroPython.
"""
