"""Whether this API faces the network with an open /warmup, said loudly at start (README, "Exposure")."""

import ipaddress

from app.core.config import Settings


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; any other address or host name is reachable from elsewhere."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(settings: Settings) -> str | None:
    """What is wrong when the API is reachable beyond this machine and anyone may call /warmup, else None."""
    address = settings.bind_address or settings.api_host
    if is_loopback(address) or settings.warmup_token is not None:
        return None
    where = "BIND_ADDRESS" if settings.bind_address else "API_HOST"
    return (
        f"{where}={address} makes the API reachable beyond this machine and WARMUP_TOKEN is empty: anyone "
        f"who reaches it may call POST /warmup. Set WARMUP_TOKEN, or {where}=127.0.0.1 to keep it local"
    )
