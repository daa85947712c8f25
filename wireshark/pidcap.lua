-- pidcap.lua: Wireshark/tshark fields for pidcap's per-packet process.
--
-- pidcap describes each process once, in a pcapng interface of its own
-- (`frame.interface_name` `curl[4242]`, `frame.interface_description` the
-- process), and writes on each packet's comment (`frame.comment`) only what
-- is the packet's, in a stable key=value grammar (documented in
-- crates/pcapfile/src/comment.rs and README.md):
--
--   interface: pid=4242 comm=curl exe=/usr/bin/curl cmdline=curl -s http://x/
--              ppid=4200 pcomm=sh uid=1000 user=alice cgroup=/user.slice/... container=docker:0123...
--   comment:   [tid=4243] [thread=NAME] [cookie=8812] [verdict=blocked] [rule=N]
--              (no tid: the pid; no thread: comm; no cookie: 0; no verdict: pass)
--
-- Older files (and TLS plaintext records, and packets with no process) carry
-- the whole of it in the comment:
--
--   pid=4242 comm=curl tid=4243 thread=curl exe=... cgroup=... cookie=8812 verdict=pass [rule=N] [tls=openssl offset=N]
--
-- Both give the same fields on every packet.
--
-- This postdissector turns it into fields you can filter on and show as
-- columns: `pidcap.pid == 3207` is exact (it does not match 32078, which
-- `frame.comment contains "pid=3207"` does), strings are unescaped.
--
-- Install: copy this file to ~/.local/lib/wireshark/plugins/ (Wireshark and
-- tshark load it at start), or load it once:
--   tshark -X lua_script:wireshark/pidcap.lua -r capture.pcapng -Y 'pidcap.pid == 3207'

local pidcap = Proto("pidcap", "pidcap process")

local F = {
    pid = ProtoField.uint32("pidcap.pid", "Process ID", base.DEC),
    comm = ProtoField.string("pidcap.comm", "Process name"),
    tid = ProtoField.uint32("pidcap.tid", "Thread ID", base.DEC),
    thread = ProtoField.string("pidcap.thread", "Thread name"),
    exe = ProtoField.string("pidcap.exe", "Executable"),
    cmdline = ProtoField.string("pidcap.cmdline", "Command line"),
    arg = ProtoField.string("pidcap.arg", "Argument"),
    ppid = ProtoField.uint32("pidcap.ppid", "Parent process ID", base.DEC),
    pcomm = ProtoField.string("pidcap.pcomm", "Parent name"),
    uid = ProtoField.uint32("pidcap.uid", "User ID", base.DEC),
    user = ProtoField.string("pidcap.user", "User name"),
    cgroup = ProtoField.string("pidcap.cgroup", "cgroup"),
    container = ProtoField.string("pidcap.container", "Container (RUNTIME:ID)"),
    cookie = ProtoField.uint64("pidcap.cookie", "Socket cookie", base.DEC),
    verdict = ProtoField.string("pidcap.verdict", "Verdict"),
    rule = ProtoField.uint16("pidcap.rule", "Rule", base.DEC),
    tls = ProtoField.string("pidcap.tls", "TLS library (plaintext record)"),
}
pidcap.fields = {
    F.pid, F.comm, F.tid, F.thread, F.exe, F.cmdline, F.arg, F.ppid, F.pcomm, F.uid,
    F.user, F.cgroup, F.container, F.cookie, F.verdict, F.rule, F.tls,
}

local comment_field = Field.new("frame.comment")
local interface_field = Field.new("frame.interface_description")

-- `\xHH` escapes back to bytes.
local function unescape(s)
    return (s:gsub("\\x(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function uint64(s)
    local v = UInt64(0)
    for d in s:gmatch("%d") do
        v = v * 10 + tonumber(d)
    end
    return v
end

local numbers = { pid = true, tid = true, ppid = true, uid = true, rule = true }
local strings = {
    comm = true, thread = true, exe = true, pcomm = true, user = true, cgroup = true,
    verdict = true, tls = true,
}

-- The tokens of `text` into `out` (a key already there is kept), the
-- command line's arguments into out.args.
local function tokens(text, out)
    local args, in_cmdline = out.args, false
    for tok in (text .. " "):gmatch("([^ ]*) ") do
        local key, value = tok:match("^([^=]+)=(.*)$")
        if key == nil then
            -- A token without `=` is the next argument of cmdline.
            if in_cmdline then
                args[#args + 1] = unescape(tok)
            end
        else
            in_cmdline = false
            if key == "cmdline" then
                args = { unescape(value) }
                in_cmdline = true
            elseif out[key] == nil then
                out[key] = value
            end
        end
    end
    out.args = args
    return out
end

-- The tokens of a comment or description of ours, or nil (it must start with `pid=N comm=`).
local function parse(text)
    if not text:match("^pid=%d+ comm=") then
        return nil
    end
    return tokens(text, {})
end

-- The process of this packet: the whole comment (older files, TLS records,
-- packets with no process), or its interface's description with the
-- comment's per-packet tokens over it and their defaults.
local function process_of()
    local comments = { comment_field() }
    for _, fi in ipairs(comments) do
        local c = parse(tostring(fi.value))
        if c then
            return c
        end
    end
    local desc = interface_field()
    local c = desc and parse(tostring(desc.value))
    if not c then
        return nil
    end
    local own = {}
    if comments[1] then
        tokens(tostring(comments[1].value), own)
    end
    for _, key in ipairs({ "tid", "thread", "cookie", "verdict", "rule" }) do
        c[key] = own[key]
    end
    c.tid = c.tid or c.pid
    c.thread = c.thread or c.comm
    c.cookie = c.cookie or "0"
    c.verdict = c.verdict or "pass"
    return c
end

function pidcap.dissector(tvb, pinfo, tree)
    local c = process_of()
    if c then
        do
            local t = tree:add(pidcap, "pidcap: " .. c.pid .. "/" .. unescape(c.comm or ""))
            for _, key in ipairs({ "pid", "comm", "tid", "thread", "exe" }) do
                local v = c[key]
                -- tid 0 and an empty thread: unknown (they are written only so on a process interface).
                if key == "tid" and v == "0" or key == "thread" and v == "" then
                    v = nil
                end
                if v and numbers[key] and v:match("^%d+$") then
                    t:add(F[key], tonumber(v))
                elseif v and strings[key] then
                    t:add(F[key], unescape(v))
                end
            end
            if c.args then
                t:add(F.cmdline, table.concat(c.args, " "))
                for _, a in ipairs(c.args) do
                    t:add(F.arg, a)
                end
            end
            for _, key in ipairs({ "ppid", "pcomm", "uid", "user", "cgroup", "verdict", "rule", "tls" }) do
                local v = c[key]
                if v and numbers[key] and v:match("^%d+$") then
                    t:add(F[key], tonumber(v))
                elseif v and strings[key] then
                    t:add(F[key], unescape(v))
                end
            end
            if c.container then
                local runtime, id = c.container:match("^([^:]*):(.*)$")
                if runtime then
                    t:add(F.container, unescape(runtime) .. ":" .. unescape(id))
                end
            end
            if c.cookie and c.cookie:match("^%d+$") then
                t:add(F.cookie, uint64(c.cookie))
            end
            return
        end
    end
end

register_postdissector(pidcap)
