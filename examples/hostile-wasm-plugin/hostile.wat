;; A hostile WASM plugin for sersync's security tests: a component of the
;; `sersync:plugin/sink-plugin` world written by hand in the component text format, so that it
;; builds without a wasm32 Rust target (the tests turn it into hostile.wasm with the `wat`
;; crate). It shows what any component can do with the WASI imports every wasm32-wasip2
;; program links: block in the host (a clock pollable), open files in a granted directory.
;;
;; <param name="attack" value="…"/> selects the attack, <param name="size" value="N"/> sizes it:
;;   huge_error     every deliver fails (retryable) with a message of N bytes holding a
;;                  newline, a fake log line and escape sequences      (N bytes, 40 MiB)
;;   log_flood      every deliver logs N lines of 8 KiB, then succeeds (N lines, 10,000)
;;   forged_log     every deliver logs, and fails with, that forged message
;;   sleep          every deliver blocks N seconds in the host         (N seconds, 60)
;;   sleep_in_init  init blocks N seconds in the host                  (N seconds, 60)
;;   hoard_files    every deliver opens N files in the first granted directory and keeps
;;                  them open; it stops at the first refusal           (N files, 20,000)
(component
  (import "sersync:plugin/types@0.1.0" (instance $types
    (type $kind' (enum "create" "modify" "close-write" "attrib" "delete" "move" "rescan"))
    (export "event-kind" (type $kind (eq $kind')))
    (type $event' (record
      (field "kind" $kind)
      (field "path" (list u8))
      (field "old-path" (option (list u8)))
      (field "is-dir" bool)
      (field "time-unix-nanos" u64)))
    (export "event" (type $event (eq $event')))
    (type $batch' (record (field "watch" u32) (field "root" (list u8)) (field "events" (list $event))))
    (export "batch" (type (eq $batch')))
    (type $sink-error' (record (field "retryable" bool) (field "message" string)))
    (export "sink-error" (type (eq $sink-error')))))
  (alias export $types "batch" (type $batch))
  (alias export $types "sink-error" (type $sink-error))

  (import "sersync:plugin/host@0.1.0" (instance $host
    (type $level' (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level (eq $level')))
    (export "log" (func (param "level" $level) (param "message" string)))))

  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $pollable (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow $pollable))))))
  (alias export $poll "pollable" (type $pollable))

  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer 1 $pollable (type $pollable))
    (export "subscribe-duration" (func (param "when" u64) (result (own $pollable))))))

  (import "wasi:filesystem/types@0.2.0" (instance $fs
    (export "descriptor" (type $descriptor (sub resource)))
    (type $descriptor-flags' (flags "read" "write" "file-integrity-sync" "data-integrity-sync"
      "requested-write-sync" "mutate-directory"))
    (export "descriptor-flags" (type $descriptor-flags (eq $descriptor-flags')))
    (type $path-flags' (flags "symlink-follow"))
    (export "path-flags" (type $path-flags (eq $path-flags')))
    (type $open-flags' (flags "create" "directory" "exclusive" "truncate"))
    (export "open-flags" (type $open-flags (eq $open-flags')))
    (type $error-code' (enum "access" "would-block" "already" "bad-descriptor" "busy" "deadlock"
      "quota" "exist" "file-too-large" "illegal-byte-sequence" "in-progress" "interrupted"
      "invalid" "io" "is-directory" "loop" "too-many-links" "message-size" "name-too-long"
      "no-device" "no-entry" "no-lock" "insufficient-memory" "insufficient-space"
      "not-directory" "not-empty" "not-recoverable" "unsupported" "no-tty" "no-such-device"
      "overflow" "not-permitted" "pipe" "read-only" "invalid-seek" "text-file-busy"
      "cross-device"))
    (export "error-code" (type $error-code (eq $error-code')))
    (export "[method]descriptor.open-at" (func
      (param "self" (borrow $descriptor))
      (param "path-flags" $path-flags)
      (param "path" string)
      (param "open-flags" $open-flags)
      (param "flags" $descriptor-flags)
      (result (result (own $descriptor) (error $error-code)))))))
  (alias export $fs "descriptor" (type $descriptor))

  (import "wasi:filesystem/preopens@0.2.0" (instance $preopens
    (alias outer 1 $descriptor (type $descriptor))
    (export "get-directories" (func (result (list (tuple (own $descriptor) string)))))))

  ;; Memory and a bump allocator, in a module of their own so that the imports can be lowered
  ;; with them before the main module is instantiated.
  (core module $Libc
    (memory (export "memory") 2)
    (global $next (mut i32) (i32.const 65536))
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32)
                             (param $size i32) (result i32)
      (local $start i32) (local $end i32)
      (local.set $start (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
      (local.set $end (i32.add (local.get $start) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (if (i32.eq (i32.const -1)
                (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                  (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1))))
            (then unreachable))))
      (global.set $next (local.get $end))
      (local.get $start)))
  (core instance $libc (instantiate $Libc))
  (alias core export $libc "memory" (core memory $memory))
  (alias core export $libc "realloc" (core func $realloc))

  (core func $log (canon lower (func $host "log") (memory $memory)))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $open_at (canon lower (func $fs "[method]descriptor.open-at") (memory $memory)))
  (core func $get_directories
    (canon lower (func $preopens "get-directories") (memory $memory) (realloc $realloc)))

  (core module $Main
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (import "wasi" "block" (func $block (param i32)))
    (import "wasi" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "wasi" "open-at" (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
    (import "wasi" "get-directories" (func $get_directories (param i32)))

    ;; Where results are returned to the host (and the host returns them to us).
    (global $ret i32 (i32.const 256))
    (global $ret2 i32 (i32.const 512))
    ;; 1 huge_error, 2 log_flood, 3 forged_log, 4 sleep, 5 sleep_in_init, 6 hoard_files
    (global $attack (mut i32) (i32.const 0))
    (global $size (mut i64) (i64.const -1))

    (data (i32.const 1024) "attack")
    (data (i32.const 1040) "size")
    (data (i32.const 1056) "huge_error")
    (data (i32.const 1072) "log_flood")
    (data (i32.const 1088) "forged_log")
    (data (i32.const 1104) "sleep")
    (data (i32.const 1120) "sleep_in_init")
    (data (i32.const 1136) "hoard_files")
    (data (i32.const 1152) "hoard")
    (data (i32.const 1280)
      "all good\n2030-01-01T00:00:00.000000Z  INFO sersync: configuration reloaded\1b[2K\1b[31m")
    (global $forged i32 (i32.const 1280))
    (global $forged_len i32 (i32.const 83))

    ;; 1 when the `len` bytes at `a` equal the `len2` bytes at `b`.
    (func $eq (param $a i32) (param $len i32) (param $b i32) (param $len2 i32) (result i32)
      (if (i32.ne (local.get $len) (local.get $len2)) (then (return (i32.const 0))))
      (block $differ
        (loop $next
          (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
          (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
          (local.set $a (i32.add (local.get $a) (i32.const 1)))
          (local.set $b (i32.add (local.get $b) (i32.const 1)))
          (local.set $len (i32.sub (local.get $len) (i32.const 1)))
          (br $next)))
      (return (i32.const 0)))

    ;; The decimal number in the `len` bytes at `p`.
    (func $number (param $p i32) (param $len i32) (result i64)
      (local $n i64)
      (block $end
        (loop $digit
          (br_if $end (i32.eqz (local.get $len)))
          (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10))
            (i64.extend_i32_u (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (local.set $len (i32.sub (local.get $len) (i32.const 1)))
          (br $digit)))
      (local.get $n))

    ;; The attack whose name is the `len` bytes at `p` (0: none).
    (func $attack_named (param $p i32) (param $len i32) (result i32)
      (if (call $eq (local.get $p) (local.get $len) (i32.const 1056) (i32.const 10))
        (then (return (i32.const 1))))
      (if (call $eq (local.get $p) (local.get $len) (i32.const 1072) (i32.const 9))
        (then (return (i32.const 2))))
      (if (call $eq (local.get $p) (local.get $len) (i32.const 1088) (i32.const 10))
        (then (return (i32.const 3))))
      (if (call $eq (local.get $p) (local.get $len) (i32.const 1104) (i32.const 5))
        (then (return (i32.const 4))))
      (if (call $eq (local.get $p) (local.get $len) (i32.const 1120) (i32.const 13))
        (then (return (i32.const 5))))
      (if (call $eq (local.get $p) (local.get $len) (i32.const 1136) (i32.const 11))
        (then (return (i32.const 6))))
      (i32.const 0))

    ;; Blocks in the host for `secs` seconds.
    (func $sleep (param $secs i64)
      (call $block (call $subscribe (i64.mul (local.get $secs) (i64.const 1000000000)))))

    ;; Returns `result<_, sink-error>` as an error with the `len` bytes at `p`.
    (func $fail (param $p i32) (param $len i32) (result i32)
      (i32.store8 (global.get $ret) (i32.const 1))
      (i32.store8 offset=4 (global.get $ret) (i32.const 1))
      (i32.store offset=8 (global.get $ret) (local.get $p))
      (i32.store offset=12 (global.get $ret) (local.get $len))
      (global.get $ret))

    (func (export "init") (param $params i32) (param $count i32) (result i32)
      (local $end i32)
      (local.set $end (i32.add (local.get $params) (i32.mul (local.get $count) (i32.const 16))))
      (block $done
        (loop $param
          (br_if $done (i32.ge_u (local.get $params) (local.get $end)))
          (if (call $eq (i32.load (local.get $params)) (i32.load offset=4 (local.get $params))
                        (i32.const 1024) (i32.const 6))
            (then (global.set $attack (call $attack_named
              (i32.load offset=8 (local.get $params)) (i32.load offset=12 (local.get $params))))))
          (if (call $eq (i32.load (local.get $params)) (i32.load offset=4 (local.get $params))
                        (i32.const 1040) (i32.const 4))
            (then (global.set $size (call $number
              (i32.load offset=8 (local.get $params)) (i32.load offset=12 (local.get $params))))))
          (local.set $params (i32.add (local.get $params) (i32.const 16)))
          (br $param)))
      (if (i64.lt_s (global.get $size) (i64.const 0))
        (then (global.set $size
          (if (result i64) (i32.eq (global.get $attack) (i32.const 1))
            (then (i64.const 41943040))
            (else (if (result i64) (i32.eq (global.get $attack) (i32.const 2))
              (then (i64.const 10000))
              (else (if (result i64) (i32.eq (global.get $attack) (i32.const 6))
                (then (i64.const 20000))
                (else (i64.const 60))))))))))
      (if (i32.eq (global.get $attack) (i32.const 5))
        (then (call $sleep (global.get $size))))
      (i32.store8 (global.get $ret) (i32.const 0))
      (global.get $ret))

    (func (export "deliver") (param i32 i32 i32 i32 i32) (result i32)
      (local $p i32) (local $n i32) (local $i i32) (local $dir i32)
      (local.set $n (i32.wrap_i64 (global.get $size)))
      (block $ok
        (if (i32.eq (global.get $attack) (i32.const 1))
          (then
            (local.set $p (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $n)))
            (memory.fill (local.get $p) (i32.const 120) (local.get $n))
            (memory.copy (local.get $p) (global.get $forged)
              (select (global.get $forged_len) (local.get $n)
                (i32.lt_u (global.get $forged_len) (local.get $n))))
            (return (call $fail (local.get $p) (local.get $n)))))
        (if (i32.eq (global.get $attack) (i32.const 2))
          (then
            (local.set $p (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8192)))
            (memory.fill (local.get $p) (i32.const 102) (i32.const 8192))
            (loop $line
              (if (i32.lt_u (local.get $i) (local.get $n))
                (then
                  (call $log (i32.const 3) (local.get $p) (i32.const 8192))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br $line))))
            (br $ok)))
        (if (i32.eq (global.get $attack) (i32.const 3))
          (then
            (call $log (i32.const 3) (global.get $forged) (global.get $forged_len))
            (return (call $fail (global.get $forged) (global.get $forged_len)))))
        (if (i32.eq (global.get $attack) (i32.const 4))
          (then (call $sleep (global.get $size)) (br $ok)))
        (if (i32.eq (global.get $attack) (i32.const 6))
          (then
            (call $get_directories (global.get $ret2))
            (br_if $ok (i32.eqz (i32.load offset=4 (global.get $ret2))))
            (local.set $dir (i32.load (i32.load (global.get $ret2))))
            (loop $open
              (if (i32.lt_u (local.get $i) (local.get $n))
                (then
                  ;; open-at(dir, no path flags, "hoard", create, read|write)
                  (call $open_at (local.get $dir) (i32.const 0) (i32.const 1152) (i32.const 5)
                    (i32.const 1) (i32.const 3) (global.get $ret2))
                  (br_if $ok (i32.load8_u (global.get $ret2)))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br $open))))
            (br $ok))))
      (i32.store8 (global.get $ret) (i32.const 0))
      (global.get $ret)))

  (core instance $main (instantiate $Main
    (with "libc" (instance $libc))
    (with "host" (instance (export "log" (func $log))))
    (with "wasi" (instance
      (export "block" (func $block))
      (export "subscribe" (func $subscribe))
      (export "open-at" (func $open_at))
      (export "get-directories" (func $get_directories))))))

  (func (export "init")
    (param "config" (list (tuple string string)))
    (result (result (error string)))
    (canon lift (core func $main "init") (memory $memory) (realloc $realloc)))
  (func (export "deliver")
    (param "batch" $batch)
    (result (result (error $sink-error)))
    (canon lift (core func $main "deliver") (memory $memory) (realloc $realloc))))
