"""POST /v1/models/NAME/rows: synthetic rows as JSON records or CSV, conditions and constraints as in the CLI."""

import json
from typing import Literal

from fastapi import Depends, HTTPException
from fastapi.responses import Response
from pydantic import Field


def add_table_routes(app, server, modality) -> None:
    from genlab.modalities.table.io import rows_bytes
    from genlab.modalities.table.sampling import sample_rows

    RowsRequest = server.request_model(modality, "RowsRequest", {  # noqa: N806
        "n": (int, Field(100, ge=1, description="number of rows")),
        "seed": (int, Field(0, ge=0, le=2**62)),
        "format": (Literal["json", "csv"], Field("json", description="JSON records, or a CSV file")),
    })

    @app.post("/v1/models/{name}/rows", responses={200: {"content": {"text/csv": {}}}})
    def rows(name: str, req: RowsRequest, key_id: str = Depends(server.caller)):  # type: ignore[valid-type]
        served = server.model(name, modality)
        if req.n > server.limits.max_rows:
            raise HTTPException(422, f"n must be at most {server.limits.max_rows}")
        mine, _ = server.options(served, req)
        server.slot(key_id)
        try:
            with served.lock:
                frame = sample_rows(served.run, req.n, req.seed, mine.conditions or None)
        finally:
            server.release(key_id)
        server.metrics.items.labels(name).inc(req.n)
        if req.format == "csv":
            return Response(rows_bytes(frame, ".csv"), media_type="text/csv")
        return {"model": name, "n": req.n, "seed": req.seed, "constraints": frame.attrs["constraints"],
                "rows": json.loads(rows_bytes(frame, ".json"))}
