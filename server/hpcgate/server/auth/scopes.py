"""Which scope each RPC needs. One table, checked for completeness by the tests."""

from __future__ import annotations

READ, WRITE, EXECUTE = "read", "write", "execute"
ALL_SCOPES = frozenset({READ, WRITE, EXECUTE})
# Scopes that let a client change things or run code: the site policy bounds such clients.
POWERFUL_SCOPES = frozenset({WRITE, EXECUTE})

# RPCs anyone may call without a token.
PUBLIC_METHODS = frozenset(
    {
        "/hpcgate.v1.StatusService/ListSystems",
        "/hpcgate.v1.StatusService/GetSystem",
        "/hpcgate.v1.StatusService/WatchSystems",
        "/hpcgate.v1.StatusService/ListOutages",
        "/hpcgate.v1.StatusService/ListNotes",
        "/hpcgate.v1.AuthService/ExchangeToken",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)

# Every other RPC and the scope its token must carry; None = any valid token.
METHOD_SCOPES: dict[str, str | None] = {
    "/hpcgate.v1.AuthService/GetTokenInfo": None,
    # ComputeService
    "/hpcgate.v1.ComputeService/SubmitJob": EXECUTE,
    "/hpcgate.v1.ComputeService/GetJob": READ,
    "/hpcgate.v1.ComputeService/ListJobs": READ,
    "/hpcgate.v1.ComputeService/CancelJob": EXECUTE,
    "/hpcgate.v1.ComputeService/WatchJobs": READ,
    "/hpcgate.v1.ComputeService/ReadJobOutput": READ,
    "/hpcgate.v1.ComputeService/CreateReservation": EXECUTE,
    "/hpcgate.v1.ComputeService/GetReservationRequest": READ,
    "/hpcgate.v1.ComputeService/ListReservationRequests": READ,
    "/hpcgate.v1.ComputeService/WatchReservationRequest": READ,
    "/hpcgate.v1.ComputeService/DeleteReservation": EXECUTE,
    "/hpcgate.v1.ComputeService/ListPartitions": READ,
    "/hpcgate.v1.ComputeService/ListNodes": READ,
    "/hpcgate.v1.ComputeService/ListReservations": READ,
    # UtilitiesService
    "/hpcgate.v1.UtilitiesService/ListDirectory": READ,
    "/hpcgate.v1.UtilitiesService/Stat": READ,
    "/hpcgate.v1.UtilitiesService/MakeDirectory": WRITE,
    "/hpcgate.v1.UtilitiesService/Move": WRITE,
    "/hpcgate.v1.UtilitiesService/Copy": WRITE,
    "/hpcgate.v1.UtilitiesService/Remove": WRITE,
    "/hpcgate.v1.UtilitiesService/ChangeMode": WRITE,
    "/hpcgate.v1.UtilitiesService/CreateSymlink": WRITE,
    "/hpcgate.v1.UtilitiesService/Checksum": READ,
    "/hpcgate.v1.UtilitiesService/View": READ,
    "/hpcgate.v1.UtilitiesService/Download": READ,
    "/hpcgate.v1.UtilitiesService/Upload": WRITE,
    "/hpcgate.v1.UtilitiesService/GetUploadStatus": WRITE,
    "/hpcgate.v1.UtilitiesService/UploadFiles": WRITE,
    "/hpcgate.v1.UtilitiesService/DownloadFiles": READ,
    "/hpcgate.v1.UtilitiesService/RunCommand": EXECUTE,
    # StorageService
    "/hpcgate.v1.StorageService/ListFilesystems": READ,
    "/hpcgate.v1.StorageService/StartTransfer": WRITE,
    # TasksService
    "/hpcgate.v1.TasksService/GetTask": READ,
    "/hpcgate.v1.TasksService/ListTasks": READ,
    "/hpcgate.v1.TasksService/CancelTask": WRITE,
    "/hpcgate.v1.TasksService/WatchTask": READ,
    # AccountService
    "/hpcgate.v1.AccountService/GetUser": READ,
    "/hpcgate.v1.AccountService/ListProjects": READ,
    "/hpcgate.v1.AccountService/ListGroups": READ,
    "/hpcgate.v1.AccountService/ListProjectMembers": READ,
    "/hpcgate.v1.AccountService/AddProjectMember": WRITE,
    "/hpcgate.v1.AccountService/RemoveProjectMember": WRITE,
}
