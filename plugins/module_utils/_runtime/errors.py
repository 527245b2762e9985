# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exceptions the runtime core raises to its callers."""


class OCIError(Exception):
    """A failure to report as is: the message names the field, path or id at fault.

    The CLI prints it and exits non-zero; modules turn it into fail_json(msg=...).
    """


class NotFound(OCIError):
    """No container of that id in the state root (never made, or deleted meanwhile).

    Callers that treat absence as a state rather than a failure (delete
    --force, a module reaching state=absent) catch this type, not the text.
    """
