// The key-value service's methods, declared once for the server that
// serves them and every client that calls them (DESIGN.md section 5, "Named
// endpoints"): each names its request and reply structs (kv.capnp), so a
// call's reply type follows from the method and a mismatch does not compile.
//
// Get and Delete are idempotent (running one twice changes nothing more than
// running it once), so a call written on a connection that dies is sent
// again on the next one; Put is not (a Put of an older value repeated after a
// newer one would undo it), so a Put that was maybe delivered ends Aborted.
//
// Scan is a stream method (DESIGN.md section 5, "Reply streams"): one
// ScanRequest, then one ScanItem per key in [start, end), in key order, then
// the end. It is idempotent (it only reads), so a scan whose connection dies
// before its first item is sent again; once an item has arrived it never is
// (the transport's rule): the caller sees Aborted and may scan again from
// the key after the last one it got.
//
// What it is not: a handler (KeyValueService in kv_service.h serves them) or
// a client. Declaring a method does no I/O.
#ifndef MOONPOOL_EXAMPLES_KV_KV_METHODS_H_
#define MOONPOOL_EXAMPLES_KV_KV_METHODS_H_

#include "kv.capnp.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/stream_method.h"

namespace kv {

inline const moonpool::transport::Method<GetRequest, GetReply> kGet{
    "kv.KeyValue/Get", {.idempotent = true}};
inline const moonpool::transport::Method<PutRequest, PutReply> kPut{
    "kv.KeyValue/Put"};
inline const moonpool::transport::Method<DeleteRequest, DeleteReply> kDelete{
    "kv.KeyValue/Delete", {.idempotent = true}};
inline const moonpool::transport::StreamMethod<ScanRequest, ScanItem> kScan{
    "kv.KeyValue/Scan", {.idempotent = true}};

}  // namespace kv

#endif  // MOONPOOL_EXAMPLES_KV_KV_METHODS_H_
