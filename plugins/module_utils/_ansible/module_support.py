# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: the cffi check and the text of an error.

Every module imports this file, and Ansible ships with a module every file
its imports reach: so it imports no more than the cffi check needs. The
read-only modules' work (info and facts) is in selection.py.
"""
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls


def require_cffi(module):
    """fail_json the Ansible way when the managed host lacks cffi."""
    if syscalls.CFFI_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('cffi'),
                         exception=''.join(traceback.format_exception(
                             type(syscalls.CFFI_IMPORT_ERROR), syscalls.CFFI_IMPORT_ERROR,
                             syscalls.CFFI_IMPORT_ERROR.__traceback__)))


def error_text(exc):
    """An error a module reports: an OSError as its path and reason (no errno), anything else as itself.

    Modules catch OSError and ValueError at their boundary, after their own
    checks, so that whatever those missed still ends in a message, never a traceback.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return "%s: %s" % (exc.filename, exc.strerror) if exc.filename else exc.strerror
    return str(exc)
