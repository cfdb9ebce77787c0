"""Admission: may this user start this sandbox now, and with what?

Pure arithmetic on plain records: units, profiles and toolchains (validated admin config),
options (``user_options`` -> :class:`~hub_ext.admission.options.Request`), quota limits
and pools, the reservation :class:`~hub_ext.admission.reservations.Ledger`, GPU-hour
accounting, the validated :class:`~hub_ext.admission.policy.Policy`, the usage report, and
:func:`~hub_ext.admission.admit.admit`, the one decision every caller makes.
"""
