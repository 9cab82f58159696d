"""Smart Charging (OCPP 1.6 §3.13, §5.5, §5.7, §5.16): profiles checked against the
charger's configuration and running transactions before they are sent, stored with what
the charger answered, cleared when a matching ClearChargingProfile is accepted."""

from __future__ import annotations

from typing import Any

from voltaro.domain.charging_profiles import (
    CONFIGURATION_KEYS,
    ChargingProfile,
    ProfileError,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    check_profile,
    limits_from_configuration,
)
from voltaro.domain.commands import (
    ClearChargingProfile,
    CommandError,
    CommandErrorCode,
    CommandOutcome,
    GetCompositeSchedule,
    GetConfiguration,
    SetChargingProfile,
)
from voltaro.service.commands import CommandService
from voltaro.store import charging_profiles, transactions
from voltaro.store.db import Database


class ChargingProfileService:
    def __init__(self, db: Database, commands: CommandService) -> None:
        self._db = db
        self._commands = commands

    async def set(
        self,
        charger_id: str,
        connector_id: int,
        profile: ChargingProfile,
        *,
        actor: str,
        limits: ProfileLimits | None = None,
    ) -> dict[str, Any]:
        """Check, send and store one profile; returns the charger's answer.

        ``limits``: the charger's Smart Charging keys when the caller knows them (the
        load manager sends often and keeps to one period); None asks the charger.

        Raises:
            CommandError: BAD_ARGUMENTS for a profile the checks refuse (nothing sent), or
                why the command failed.
        """
        if limits is None:
            config = await self._commands.execute(
                charger_id, GetConfiguration(keys=CONFIGURATION_KEYS), actor=actor
            )
            limits = limits_from_configuration({e.key: e.value for e in config.configuration})
        active = await self._db.run(
            transactions.list_transactions, active=True, charger_id=charger_id, limit=100
        )
        running = [t.transaction_id for t in active if t.connector_id == connector_id]
        installed = await self._db.run(charging_profiles.installed_ids, charger_id)
        try:
            check_profile(
                profile,
                connector_id=connector_id,
                limits=limits,
                running_transactions=running,
                installed=installed,
            )
        except ProfileError as exc:
            raise CommandError(
                CommandErrorCode.BAD_ARGUMENTS, f"SetChargingProfile not sent: {exc}"
            ) from None
        command = SetChargingProfile(connector_id=connector_id, profile=profile)
        try:
            outcome = await self._commands.execute(charger_id, command, actor=actor)
        except CommandError as exc:
            if exc.code in (CommandErrorCode.TIMEOUT, CommandErrorCode.DISCONNECTED):
                await self._db.run(
                    charging_profiles.record,
                    charger_id=charger_id,
                    connector_id=connector_id,
                    profile=profile,
                    status=None,
                    error=f"{exc.code}: {exc.message}",
                    actor=actor,
                )
            raise
        await self._db.run(
            charging_profiles.record,
            charger_id=charger_id,
            connector_id=connector_id,
            profile=profile,
            status=outcome.status,
            error=None,
            actor=actor,
        )
        return {"action": outcome.action, "status": outcome.status}

    async def clear(
        self,
        charger_id: str,
        *,
        actor: str,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: ProfilePurpose | None = None,
        stack_level: int | None = None,
    ) -> dict[str, Any]:
        command = ClearChargingProfile(
            profile_id=profile_id,
            connector_id=connector_id,
            purpose=purpose,
            stack_level=stack_level,
        )
        outcome = await self._commands.execute(charger_id, command, actor=actor)
        cleared = 0
        if outcome.status == "Accepted":
            cleared = await self._db.run(
                charging_profiles.clear_matching,
                charger_id,
                profile_id=profile_id,
                connector_id=connector_id,
                purpose=purpose,
                stack_level=stack_level,
            )
        return {"action": outcome.action, "status": outcome.status, "cleared": cleared}

    async def composite(
        self,
        charger_id: str,
        connector_id: int,
        duration: int,
        *,
        actor: str,
        unit: RateUnit | None = None,
    ) -> CommandOutcome:
        command = GetCompositeSchedule(connector_id=connector_id, duration=duration, rate_unit=unit)
        return await self._commands.execute(charger_id, command, actor=actor)
