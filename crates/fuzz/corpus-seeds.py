#!/usr/bin/env python3
# Writes the hand-made seed files of crates/fuzz/corpus/{pcap,pcapng,decode}
# (big-endian and nanosecond pcap, link types RAW/12/IPV4/IPV6/ETHERNET with
# VLAN and ARP/NULL/LOOP/an unsupported one, pcapng with if_tsresol 2^-n and
# if_tsoffset, SPB and PB blocks, SLL and SLL2 interfaces, two sections, a
# cut last block, raw IP packets) into the current directory. The other
# seeds are real captures: tcpdump/dumpcap on lo and any in a network
# namespace, `pidcap run -w`, `pidcap lib export`, and the repo's fixtures.
import struct, subprocess
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16; return (~s)&0xffff
def ip4(proto,payload,src=b'\x7f\0\0\1',dst=b'\x0a\0\0\2',opts=b'',flags=0x4000):
    ihl=5+len(opts)//4
    h=struct.pack('!BBHHHBBH4s4s',0x40|ihl,0,ihl*4+len(payload),0x1234,flags,64,proto,0,src,dst)+opts
    h=h[:10]+struct.pack('!H',csum(h))+h[12:]
    return h+payload
def udp(sp,dp,data): return struct.pack('!HHHH',sp,dp,8+len(data),0)+data
def tcp(sp,dp,data,flags=0x18,opts=b''):
    off=(20+len(opts))//4
    return struct.pack('!HHIIBBHHH',sp,dp,1000,2000,off<<4,flags,65535,0,0)+opts+data
def ip6(nh,payload,ext=b''):
    return struct.pack('!IHBB',0x60000000,len(ext)+len(payload),nh,64)+b'\0'*15+b'\1'+b'\xfd'+b'\0'*14+b'\2'+ext+payload
pk=[ip4(17,udp(4000,53,b'\x12\x34\x01\x00\x00\x01dns?')),
    ip4(6,tcp(40000,80,b'GET / HTTP/1.1\r\n\r\n',opts=b'\x02\x04\x05\xb4')),
    ip4(1,b'\x08\x00\xf7\xff\x00\x01\x00\x01ping'),
    ip6(17,udp(5353,53,b'v6')),
    ip6(0,tcp(1,2,b'x',flags=0x02),ext=bytes([6,0,1,4,0,0,0,0])),  # hop-by-hop then TCP
    ip6(58,b'\x80\x00\x00\x00\x00\x01\x00\x01echo'),
    ip4(17,udp(1,2,b'frag'),flags=0x2000),
    ip4(6,tcp(443,5555,b'',flags=0x12),opts=b'\x01\x01\x01\x00')]
open('packets.bin','wb').write(b''.join(pk))
for i,p in enumerate(pk): open('raw%d.ip'%i,'wb').write(p)
# classic pcap writer
def pcap(frames,linktype,big=False,nano=False,snap=65535):
    e='>' if big else '<'
    out=struct.pack(e+'IHHiIII',0xa1b23c4d if nano else 0xa1b2c3d4,2,4,0,0,snap,linktype)
    for i,f in enumerate(frames):
        out+=struct.pack(e+'IIII',1700000000+i,i*1000,len(f),len(f)+3)+f
    return out
eth=lambda p,t=0x0800: b'\x02\0\0\0\0\1\x02\0\0\0\0\2'+struct.pack('!H',t)+p
vlan=lambda p: b'\x02\0\0\0\0\1\x02\0\0\0\0\2\x81\0\0\x05\x88\xa8\0\x06\x08\0'+p
arp=b'\xff'*6+b'\x02\0\0\0\0\2\x08\x06'+b'\0\1\x08\0\6\4\0\1'+b'\2'*6+b'\x0a\0\0\1'+b'\0'*6+b'\x0a\0\0\2'
open('raw101_be_nano.pcap','wb').write(pcap(pk[:4],101,big=True,nano=True))
open('ipv4_228.pcap','wb').write(pcap([pk[0],pk[1],pk[2]],228))
open('ipv6_229_be.pcap','wb').write(pcap([pk[3],pk[4],pk[5]],229,big=True))
open('eth_vlan_arp.pcap','wb').write(pcap([eth(pk[0]),arp,vlan(pk[1]),eth(pk[3],0x86dd)],1))
open('null_0.pcap','wb').write(pcap([struct.pack('<I',2)+pk[0],struct.pack('<I',30)+pk[3]],0))
open('loop_108_be.pcap','wb').write(pcap([struct.pack('>I',2)+pk[1],struct.pack('>I',24)+pk[4]],108,big=True))
open('unsupported_147.pcap','wb').write(pcap([pk[0]],147))
open('raw12_snap64.pcap','wb').write(pcap([pk[1][:40],pk[6]],12,snap=64))
# pcapng writer
def opt(code,val,e): 
    pad=b'\0'*((4-len(val)%4)%4); return struct.pack(e+'HH',code,len(val))+val+pad
def block(t,body,e): return struct.pack(e+'II',t,len(body)+12)+body+struct.pack(e+'I',len(body)+12)
def shb(e,opts=b''): return block(0x0A0D0D0A,struct.pack(e+'IHHq',0x1A2B3C4D,1,0,-1)+opts,e)
def idb(lt,e,snap=0,opts=b''): return block(1,struct.pack(e+'HHI',lt,0,snap)+opts,e)
def epb(iface,ts,data,e,opts=b'',orig=None):
    pad=b'\0'*((4-len(data)%4)%4)
    return block(6,struct.pack(e+'IIIII',iface,ts>>32,ts&0xffffffff,len(data),orig or len(data))+data+pad+opts,e)
def spb(data,e,orig=None):
    pad=b'\0'*((4-len(data)%4)%4); return block(3,struct.pack(e+'I',orig or len(data))+data+pad,e)
def pb(iface,ts,data,e):
    pad=b'\0'*((4-len(data)%4)%4)
    return block(2,struct.pack(e+'HHIIII',iface,0,ts>>32,ts&0xffffffff,len(data),len(data))+data+pad,e)
E='<'; B='>'
end=struct.pack('<HH',0,0)
f=shb(B,opt(4,b'fuzz seed',B)+struct.pack('>HH',0,0))+idb(101,B,0,opt(9,b'\x89',B)+opt(14,struct.pack('>q',-5),B)+struct.pack('>HH',0,0))
f+=epb(0,123456789,pk[0],B,opt(1,b'pid=42 comm=dig cookie=7 verdict=blocked rule=3',B)+opt(2,struct.pack('>I',1),B)+struct.pack('>HH',0,0))
f+=epb(0,5,pk[3],B)
open('be_tsresol2.pcapng','wb').write(f)
f=shb(E)+idb(1,E,96)+idb(113,E,0,opt(9,b'\x03',E)+end)+idb(276,E)
sll=b'\0\4\0\1\0\6'+b'\2'*6+b'\0\0'+b'\x08\x00'
sll2=b'\x08\x00\0\0'+b'\0\0\0\1'+b'\0\1'+b'\0'+b'\6'+b'\2'*6+b'\0\0'
f+=spb(eth(pk[1]),E)+spb(eth(pk[0]),E)+pb(1,99,sll+pk[2],E)+epb(2,7,sll2+pk[5],E,opt(1,b'pid=1 comm=a\\x20b',E)+opt(2,struct.pack('<I',2),E)+end)
f+=block(4,b'\0'*4,E)+block(0x80000001,b'custom!!',E)
f+=shb(E)+idb(229,E)+epb(0,1,pk[4],E)+epb(0,2,pk[7],E,opt(1,b'not ours',E)+opt(1,b'pid=9 comm=second',E)+end)
open('spb_pb_sll_sections.pcapng','wb').write(f)
open('truncated_last.pcapng','wb').write((shb(E)+idb(101,E)+epb(0,1,pk[0],E)+epb(0,2,pk[1],E))[:-9])
# DNS messages (corpus/dns): a query, a response with A answers, one with
# CNAME/AAAA/MX/TXT/SRV, NXDomain, a compression pointer loop, a cut response.
def qname(n): return b''.join(bytes([len(l)])+l.encode() for l in n.split('.'))+b'\0'
def dnsmsg(flags,qd,an,body): return struct.pack('!HHHHHH',0xbeef,flags,qd,an,0,0)+body
q=qname('example.com')+b'\0\1\0\1'
def rr(t,data): return b'\xc0\x0c'+struct.pack('!HHIH',t,1,3600,len(data))+data
open('dns_query.bin','wb').write(dnsmsg(0x0100,1,0,q))
resp=dnsmsg(0x8180,1,2,q+rr(1,b'\x5d\xb8\xd7\x0e')+rr(1,b'\x5d\xb8\xd7\x0f'))
open('dns_response_a.bin','wb').write(resp)
open('dns_response_forms.bin','wb').write(dnsmsg(0x8180,1,5,q+rr(5,qname('www.example.org'))+rr(28,b'\0'*15+b'\1')
    +rr(15,b'\0\x0a\xc0\x0c')+rr(16,b'\x05hello')+rr(33,b'\0\1\0\2\x01\xbb\xc0\x0c')))
open('dns_nxdomain.bin','wb').write(dnsmsg(0x8183,1,0,q))
open('dns_pointer_loop.bin','wb').write(dnsmsg(0x0100,1,0,b'\xc0\x0c\0\1\0\1'))
open('dns_cut.bin','wb').write(resp[:-6])
